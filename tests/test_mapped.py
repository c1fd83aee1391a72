"""Column mappings (`ingest --map`, helpsteer/formats/mapped.py): each shape (pairs, ratings,
rankings, criteria, and conversations in any of them) on a file in a schema no reader knows, with
hand-computed rows and quarantine lines; the unknown-schema message with its ready --map line; and
the exact exit-2 messages for bad --map / --label-values / --scale, raised before any work."""

from __future__ import annotations

import json

import polars as pl
import pytest
from conftest import ingest_accounts_for_all, manifest, quarantine, run_cli, table, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpsteer.errors import UsageError
from helpsteer.formats.mapped import parse_map, suggest_map
from helpsteer.ids import response_id
from helpsteer.schema import JSON


def ingest(ws, path, *extra, name="m"):
    return run_cli("ingest", path, "--workspace", ws, "--name", name, *extra)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def err_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# --- pairs (the README example) -----------------------------------------------------------------
PAIRS_MAP = ["--format", "pairs", "--map", "prompt=input,response_a=output_1,response_b=output_2,label=label,annotator=who,id=id",
             "--label-values", "a=1,b=2,tie=0"]


def test_pairs_mapping_votes_ties_ids_and_quarantine(ws, tmp_path):
    rows = [{"id": 1, "input": "Q1", "output_1": "A1", "output_2": "B1", "label": "a", "who": "w1"},
            {"id": 1, "input": "Q1", "output_1": "A1", "output_2": "B1", "label": "b", "who": "w2"},
            {"id": 2, "input": "Q2", "output_1": "A2", "output_2": "B2", "label": "tie", "who": "w1"},
            {"id": 3, "input": "Q3", "output_1": "same", "output_2": "same", "label": "a", "who": "w1"},
            {"id": 4, "input": "Q4", "output_1": "A4", "output_2": None, "label": "b", "who": "w2"}]
    rows += [{"id": 10 + i, "input": f"q{i}", "output_1": f"x{i}", "output_2": f"y{i}", "label": "ab"[i % 2], "who": "w3"} for i in range(50)]
    rows.append({"id": 99, "input": "Q", "output_1": "A", "output_2": "B", "label": "maybe", "who": "w1"})  # past the checked first records
    path = write_jsonl(tmp_path / "f.jsonl", rows)
    assert ingest(ws, path, *PAIRS_MAP) == 0
    src = manifest(ws, "m")["sources"][0]
    assert (src["format"], src["records"], src["ingested"], src["quarantined"]) == ("mapped-pairs", 56, 53, 3)
    assert src["mapping"]["map"] == {"prompt": "input", "response_a": "output_1", "response_b": "output_2", "label": "label", "annotator": "who", "id": "id"}
    assert {q["line"]: q["reason"] for q in quarantine(ws, "m")} == {
        4: "field 'output_2': identical to 'output_1'",
        5: "field 'output_2': missing or null",
        56: "field 'label': value 'maybe' is not mapped by --label-values (mapped: a, b, tie)"}
    p = table(ws, "m", "preferences")
    assert p.height == 53
    first = p.filter(pl.col("pair_id") == "f:1").sort("annotator_id")
    assert first.select("annotator_id", "strength").rows() == [("w1", -1.0), ("w2", 1.0)]  # 1 = A better = -1
    assert first["response_a_id"].to_list() == [response_id(user("Q1"), "A1")] * 2
    assert p.filter(pl.col("pair_id") == "f:2")["strength"].to_list() == [0.0]
    assert table(ws, "m", "responses").height == 2 * 53 - 2  # the two votes on pair 1 share its responses


def test_pairs_chosen_rejected_and_strength(ws, tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"q": "Q", "good": "G", "bad": "B"}, {"q": "Q", "good": "G2", "bad": None}])
    assert ingest(ws, path, "--map", "prompt=q,chosen=good,rejected=bad") == 0  # --format auto: the targets say pairs
    assert table(ws, "m", "preferences").select("strength", "annotator_id").rows() == [(-1.0, None)]
    assert [q["reason"] for q in quarantine(ws, "m")] == ["field 'bad': missing or null"]
    path = write_jsonl(tmp_path / "h.jsonl", [{"q": "Q", "a": "A", "b": "B", "s": -2}, {"q": "Q", "a": "A", "b": "C", "s": 5}])
    assert ingest(ws, path, "--format", "pairs", "--map", "prompt=q,response_a=a,response_b=b,strength=s", name="s") == 0
    assert table(ws, "s", "preferences")["strength"].to_list() == [-2.0]
    assert [q["reason"] for q in quarantine(ws, "s")] == ["field 's': strength 5.0 is not in -3..3 (negative = response A better)"]


# --- ratings ---------------------------------------------------------------------------------------
def test_ratings_mapping_csv_annotators_and_scale(ws, tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("question,answer,helpful,honest,rater\nQ1,A1,4,5,r1\nQ1,A1,3,4,r2\nQ2,A2,,2,r1\nQ3,A3,7,1,r2\nQ4,A4,,,r1\n")
    assert ingest(ws, path, "--format", "ratings", "--map", "prompt=question,response=answer,helpful=helpful,honest=honest,annotator=rater",
                  "--scale", "1-5") == 0
    m = manifest(ws, "m")
    assert (m["sources"][0]["records"], m["sources"][0]["ingested"], m["sources"][0]["quarantined"]) == (5, 3, 2)
    assert m["scales"] == {"helpful": [1.0, 5.0], "honest": [1.0, 5.0]}
    assert {q["line"]: q["reason"] for q in quarantine(ws, "m")} == {  # the CSV header is line 1
        5: "field 'helpful': rating 7.0 is outside --scale 1-5",
        6: "fields helpful, honest: no rating (all null)"}
    r = table(ws, "m", "ratings").sort("response_id", "annotator_id", "attribute")
    a1, a2 = response_id(user("Q1"), "A1"), response_id(user("Q2"), "A2")
    assert r.select("response_id", "annotator_id", "attribute", "score").rows() == sorted([
        (a1, "r1", "helpful", 4.0), (a1, "r1", "honest", 5.0), (a1, "r2", "helpful", 3.0), (a1, "r2", "honest", 4.0), (a2, "r1", "honest", 2.0)])
    assert table(ws, "m", "responses").height == 2


def test_ratings_long_form_and_text_ratings(ws, tmp_path):
    path = write_jsonl(tmp_path / "long.jsonl", [{"p": "Q", "r": "A", "aspect": "clarity", "grade": "good", "by": 1},
                                                  {"p": "Q", "r": "A", "aspect": "depth", "grade": 2, "by": 1}])
    assert ingest(ws, path, "--format", "ratings", "--map", "prompt=p,response=r,attribute=aspect,score=grade,annotator=by",
                  "--label-values", "good=3,poor=1") == 0
    r = table(ws, "m", "ratings").sort("attribute")
    assert r.select("annotator_id", "attribute", "score").rows() == [("1", "clarity", 3.0), ("1", "depth", 2.0)]


# --- rankings --------------------------------------------------------------------------------------
def test_rankings_mapping_every_pair_one_vote_per_annotator(ws, tmp_path):
    rows = [{"task": "T1", "candidates": ["x", "y", "z"], "order": [2, 1, 3], "judge": "u1"},
            {"task": "T1", "candidates": ["x", "y", "z"], "order": [1, 1, 2], "judge": "u2"},
            {"task": "T2", "candidates": ["p"], "order": [1], "judge": "u1"},
            {"task": "T3", "candidates": ["p", "q"], "order": [1], "judge": "u1"}]
    path = write_jsonl(tmp_path / "rank.jsonl", rows)
    assert ingest(ws, path, "--format", "rankings", "--map", "prompt=task,drafts=candidates,ranks=order,annotator=judge") == 0
    assert {q["line"]: q["reason"] for q in quarantine(ws, "m")} == {
        3: "field 'candidates': 1 draft(s); a ranking needs at least 2", 4: "field 'order': 1 ranks for 2 drafts"}
    p = table(ws, "m", "preferences")
    x, y, z = (response_id(user("T1"), d) for d in "xyz")
    got = sorted((r["annotator_id"], r["response_a_id"], r["response_b_id"], r["strength"]) for r in p.iter_rows(named=True))
    assert got == sorted([("u1", x, y, 1.0), ("u1", x, z, -1.0), ("u1", y, z, -1.0),  # y ranked 1st: better than x
                          ("u2", x, y, 0.0), ("u2", x, z, -1.0), ("u2", y, z, -1.0)])  # x and y tied
    assert p["pair_id"].n_unique() == 3 and all(pid.endswith((":0-1", ":0-2", ":1-2")) for pid in p["pair_id"])
    assert table(ws, "m", "responses").height == 3


def test_rankings_per_annotator_rankings_with_text_ranks(ws, tmp_path):
    rows = [{"id": "i1", "task": "T", "drafts": ["a", "b", "c"], "votes": {"ann1": ["best", "mid", "worst"], "ann2": ["mid", "best", "worst"]}},
            {"id": "i2", "task": "U", "drafts": ["d", "e"], "votes": [[1, 2], [2, 1], [1, 2]]}]
    path = write_jsonl(tmp_path / "r.jsonl", rows)
    assert ingest(ws, path, "--format", "rankings", "--map", "prompt=task,drafts=drafts,rankings=votes,id=id", "--label-values", "best=1,mid=2,worst=3") == 0
    p = table(ws, "m", "preferences").sort("pair_id", "annotator_id")
    assert p.select("pair_id", "annotator_id", "strength").rows() == [
        ("r:i1:0-1", "ann1", -1.0), ("r:i1:0-1", "ann2", 1.0), ("r:i1:0-2", "ann1", -1.0), ("r:i1:0-2", "ann2", -1.0),
        ("r:i1:1-2", "ann1", -1.0), ("r:i1:1-2", "ann2", -1.0),
        ("r:i2:0-1", "anon:r:i2:0", -1.0), ("r:i2:0-1", "anon:r:i2:1", 1.0), ("r:i2:0-1", "anon:r:i2:2", -1.0)]


# --- binary criteria -------------------------------------------------------------------------------
def test_criteria_mapping_wide_gives_principles_and_ratings(ws, tmp_path):
    rows = [{"prompt": "P1", "reply": "R1", "concise": "Yes", "cites": False, "grader": "g1"},
            {"prompt": "P1", "reply": "R1", "concise": "no", "cites": True, "grader": "g2"},
            {"prompt": "P2", "reply": "R2", "concise": None, "cites": None, "grader": "g1"}]
    path = tmp_path / "crit.json"
    path.write_text(json.dumps(rows))
    assert ingest(ws, path, "--format", "criteria", "--map", "prompt=prompt,response=reply,concise=concise,cites=cites,annotator=grader") == 0
    r1 = response_id(user("P1"), "R1")
    pr = table(ws, "m", "principles").sort("annotator_id", "principle")
    assert pr.select("response_id", "annotator_id", "principle", "fulfilment").rows() == [
        (r1, "g1", "cites", 0.0), (r1, "g1", "concise", 1.0), (r1, "g2", "cites", 1.0), (r1, "g2", "concise", 0.0)]
    assert table(ws, "m", "ratings").sort("annotator_id", "attribute").select("attribute", "score").rows() == [
        ("cites", 0.0), ("concise", 1.0), ("cites", 1.0), ("concise", 0.0)]
    assert manifest(ws, "m")["scales"] == {"cites": [0.0, 1.0], "concise": [0.0, 1.0]}
    assert [(q["line"], q["reason"]) for q in quarantine(ws, "m")] == [(3, "fields concise, cites: no verdict (all null)")]  # JSON array element 3


def test_criteria_mapping_long_keeps_explanations(ws, tmp_path):
    rows = [{"q": "Q", "a": "A", "test": "Is it short?", "passed": "Yes", "why": "3 words", "expert": 7},
            {"q": "Q", "a": "A", "test": "Is it polite?", "passed": "No", "why": "rude", "expert": 7}]
    path = write_jsonl(tmp_path / "long.jsonl", rows)
    assert ingest(ws, path, "--format", "criteria", "--map", "prompt=q,response=a,criterion=test,verdict=passed,explanation=why,annotator=expert") == 0
    pr = table(ws, "m", "principles").sort("principle")
    assert pr.select("annotator_id", "principle", "fulfilment", "explanation").rows() == [
        ("7", "Is it polite?", 0.0, "rude"), ("7", "Is it short?", 1.0, "3 words")]
    assert sorted(table(ws, "m", "ratings")["attribute"]) == ["is_it_polite", "is_it_short"]


# --- conversations ---------------------------------------------------------------------------------
def test_conversation_column_as_context(ws, tmp_path):
    conv = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}, {"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]
    rows = [{"conversation": conv, "score": 9, "user_id": "u1"}, {"conversation": conv[:1], "score": 3, "user_id": "u1"}]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    assert ingest(ws, path, "--format", "ratings", "--map", "context=conversation,quality=score,annotator=user_id", "--scale", "0-10") == 0
    resp = table(ws, "m", "responses").row(0, named=True)
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "2+2?"}]
    assert resp["context"] == turns and resp["prompt"] == "2+2?" and resp["response"] == "4"
    assert table(ws, "m", "ratings").select("response_id", "attribute", "score").rows() == [(response_id(turns, "4"), "quality", 9.0)]
    assert [q["reason"] for q in quarantine(ws, "m")] == [
        "field 'conversation': the conversation does not end with an assistant turn (map response=COL for the response)"]
    # pairs after a conversation: the context is the turns before both responses
    path = write_jsonl(tmp_path / "pchat.jsonl", [{"history": turns, "left": "4", "right": "5", "winner": "left"}])
    assert ingest(ws, path, "--map", "context=history,response_a=left,response_b=right,label=winner", "--label-values", "left=1,right=2", name="p") == 0
    p = table(ws, "p", "preferences").row(0, named=True)
    assert (p["response_a_id"], p["strength"]) == (response_id(turns, "4"), -1.0)


# --- the unknown-schema message -------------------------------------------------------------------
def test_unknown_schema_names_columns_and_prints_a_map_line(ws, tmp_path, capsys):
    path = write_jsonl(tmp_path / "f.jsonl", [{"input": "Q1", "output_1": "A1", "output_2": "B1", "label": "a"},
                                              {"input": "Q2", "output_1": "A2", "output_2": "B2", "label": "b"},
                                              {"input": "Q3", "output_1": "A3", "output_2": "B3", "label": "tie"}])
    assert ingest(ws, path) == 2
    assert err_line(capsys) == (
        f"error: {path}: record fields [input, output_1, output_2, label] match no known format. Closest: llmbar (same fields, other values). "
        "Map them to a shape (pairs, ratings, rankings, criteria; README \"Ingest\") by editing: "
        "--format pairs --map prompt=input,response_a=output_1,response_b=output_2,label=label --label-values a=1,b=2,tie=0")
    assert not (ws / "datasets").exists()


@pytest.mark.parametrize("rows, line", [
    ([{"question": "q", "answer": "a", "clarity": 4, "depth": 2, "worker": "w1"}],
     "--format ratings --map prompt=question,response=answer,clarity=clarity,depth=depth,annotator=worker --scale 0-4"),
    ([{"query": "q", "outputs": ["a", "b"], "ranking": [2, 1]}], "--format rankings --map prompt=query,drafts=outputs,ranks=ranking"),
    ([{"prompt": "q", "reply": "a", "is_safe": "yes", "on_topic": "no"}], "--format criteria --map prompt=prompt,response=reply,is_safe=is_safe,on_topic=on_topic"),
    ([{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "stars": 5}], "--format ratings --map context=messages,stars=stars --scale 1-5"),
])
def test_suggested_map_lines_per_shape(rows, line):
    assert suggest_map(rows) == line


def test_suggested_ratings_line_ingests_as_printed(ws, tmp_path, capsys):
    path = write_jsonl(tmp_path / "x.jsonl", [{"question": "q", "answer": "a", "clarity": 4, "worker": "w1"}])
    assert ingest(ws, path) == 2
    suggestion = err_line(capsys).split("by editing: ")[1].split()
    assert ingest(ws, path, *suggestion) == 0
    assert table(ws, "m", "ratings").select("annotator_id", "attribute", "score").rows() == [("w1", "clarity", 4.0)]


# --- bad options: exit 2, one line naming the option and the bad part, before any work -------------
BAD = [
    (["--format", "pairs", "--map", "prompt=input,response_a=output_1,response_b=output_2,lable=label"],
     "error: --map: unknown target 'lable' for --format pairs (targets: prompt, context, annotator, split, domain, language, id, response_a, "
     "response_b, label, strength, chosen, rejected, justification, subset, model_a, model_b)"),
    (["--format", "pairs", "--map", "prompt=input,response_a=output_1,response_b=output_3,label=label"],
     "error: --map: column 'output_3' (for response_b) is not in {path}; its columns: input, output_1, output_2, label"),
    (["--format", "pairs", "--map", "prompt=input,response_a=output_1,response_b=output_2,label=label", "--label-values", "a=1,b=2"],
     "error: --label-values: {path}:3: field 'label' has value 'tie', which is not mapped (mapped: a, b); add tie=1, tie=2 or tie=0"),
    (["--format", "pairs", "--map", "prompt=input,response_a=output_1,response_b=output_2,label=label"],
     "error: --label-values: {path}:1: field 'label' has value 'a', which is not mapped (mapped: the defaults 1, 2, 0); add a=1, a=2 or a=0"),
    (["--format", "pairs", "--map", "prompt=input,response_a=output_1,response_b=output_2,label=label", "--label-values", "a=1,b=3"],
     "error: --label-values: 'b=3': a pairs label maps to 1 (response A better), 2 (B better) or 0 (tie)"),
    (["--format", "pairs", "--map", "prompt"], "error: --map: 'prompt' is not TARGET=COLUMN (e.g. --map prompt=question,response=answer)"),
    (["--format", "pairs", "--map", "prompt=input,response_a=output_1"],
     "error: --map: --format pairs needs response_a and response_b (or chosen and rejected); got prompt, response_a"),
    (["--format", "ratings", "--map", "prompt=input,response=output_1,overall=output_2"],
     "error: --map: attribute 'overall' maps column 'output_2', whose values are not numbers ({path}:1: 'B1'); ratings targets are "
     "prompt, context, annotator, split, domain, language, response, model, attribute, score, any other key names a numeric attribute"),
    (["--format", "ratings", "--map", "prompt=input,response=output_1,x=label", "--scale", "0_100"],
     "error: --scale: '0_100' is not LO-HI (e.g. --scale 0-100, --scale 1..5 or --scale overall=1-5,coverage=0-100)"),
    (["--format", "hh-rlhf", "--map", "prompt=input"],
     "error: --map reads a file as one of the shapes pairs, ratings, rankings or criteria: use --format SHAPE (or auto), not 'hh-rlhf'"),
    (["--label-values", "a=1"], "error: --label-values goes with --map (it describes the mapped columns)"),
    (["--format", "rankings"], "error: --format rankings reads a file through a column mapping: add --map TARGET=COLUMN,... (README \"Ingest\")"),
]


@pytest.mark.parametrize("args, message", BAD)
def test_bad_map_options_exit_2_before_any_work(ws, tmp_path, capsys, args, message):
    path = write_jsonl(tmp_path / "f.jsonl", [{"input": "Q1", "output_1": "A1", "output_2": "B1", "label": "a"},
                                              {"input": "Q2", "output_1": "A2", "output_2": "B2", "label": "b"},
                                              {"input": "Q3", "output_1": "A3", "output_2": "B3", "label": "tie"}])
    assert ingest(ws, path, *args) == 2
    assert err_line(capsys) == message.format(path=path)
    assert not (ws / "datasets").exists()


def test_parse_map_targets_per_shape():
    m = parse_map("context=turns,response=r,helpfulness=h,annotator=w", "ratings", scale="helpfulness=0-4")
    assert (m.fields, m.open, m.scale) == ({"context": "turns", "response": "r", "annotator": "w"}, {"helpfulness": "h"}, {"helpfulness": (0.0, 4.0)})
    # text and numbers are typed for the readers; structures and scalars compared as text stay raw JSON
    assert m.spec() == {"turns": JSON, "r": pl.String, "h": pl.Float64, "w": JSON}
    assert parse_map("prompt=p,drafts=d,rankings=r", "rankings").spec() == {"p": pl.String, "d": JSON, "r": JSON}
    with pytest.raises(UsageError, match=r"^--scale: attribute 'helpfulnes' is not in --map \(attributes: helpfulness\)$"):
        parse_map("response=r,helpfulness=h", "ratings", scale="helpfulnes=0-4")
    with pytest.raises(UsageError, match=r"^--scale goes with --format ratings"):
        parse_map("prompt=p,drafts=d,ranks=r", "rankings", scale="1-3")
    with pytest.raises(UsageError, match=r"^--map: target 'prompt' is given twice$"):
        parse_map("prompt=p,prompt=q,response=r,x=y", "ratings")
    with pytest.raises(UsageError, match=r"^--map: give prompt or context, not both"):
        parse_map("prompt=p,context=c,response=r,x=y", "ratings")


# --- fuzzed records never crash a mapped reader and never lose a record -----------------------------
values = st.recursive(st.none() | st.booleans() | st.integers(-3, 5) | st.floats(allow_nan=True) | st.text(max_size=6),
                      lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(["role", "content", "from", "value"]), c, max_size=2), max_leaves=5)
MAPS = {"pairs": "prompt=a,response_a=b,response_b=c,label=d,annotator=e", "ratings": "context=a,response=b,x=c,annotator=e",
        "rankings": "prompt=a,drafts=b,rankings=c", "criteria": "prompt=a,response=b,criterion=c,verdict=d,explanation=e"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(records=st.lists(st.fixed_dictionaries({k: values for k in "abcde"}), min_size=1, max_size=10), shape=st.sampled_from(sorted(MAPS)))
def test_fuzzed_mapped_records_never_crash(tmp_path_factory, records, shape):
    tmp = tmp_path_factory.mktemp("fuzz")
    path = write_jsonl(tmp / "f.jsonl", records)
    ingest_accounts_for_all(path, len(records), "--format", shape, "--map", MAPS[shape])
