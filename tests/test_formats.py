"""Every format round-trips through `ingest` with hand-computed counts, ids, annotator rows and
strengths (HelpSteer sign convention: negative = first response better)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from conftest import manifest, quarantine, run_cli, table, write_jsonl

from helpsteer.ids import prompt_id, response_id, stable_hash

ATTRS = ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]


def ingest(ws, name, *paths, fmt=None, extra=()):
    args = ["ingest", *paths, "--workspace", ws, "--name", name, *extra]
    if fmt:
        args += ["--format", fmt]
    return run_cli(*args)


def test_helpsteer2_aggregated_ratings_and_multiturn(ws, tmp_path, capsys):
    multi = "Hi there<extra_id_1>Assistant\nHello! How can I help?\n<extra_id_1>User\nWhat is 2+2?"
    rows = [
        {"prompt": "What is the capital of France?", "response": "Paris.", "helpfulness": 4, "correctness": 4, "coherence": 4, "complexity": 1, "verbosity": 1},
        {"prompt": "What is the capital of France?", "response": "Lyon.", "helpfulness": 1, "correctness": 0, "coherence": 4, "complexity": 1, "verbosity": 1},
        {"prompt": multi, "response": "4", "helpfulness": 3, "correctness": 4, "coherence": 4, "complexity": 0, "verbosity": 0},
    ]
    f = write_jsonl(tmp_path / "train.jsonl.gz", rows, gz=True)
    assert ingest(ws, "hs2", f) == 0
    assert "format helpsteer2 (auto-detected)" in capsys.readouterr().err
    resp = table(ws, "hs2", "responses").sort("response")
    assert resp.height == 3 and set(resp["split"]) == {"train"}
    ctx = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "What is 2+2?"}]
    four = resp.filter(pl.col("response") == "4").row(0, named=True)
    assert four["context"] == ctx
    assert four["prompt"] == "What is 2+2?"
    assert four["response_id"] == response_id(ctx, "4") and four["prompt_id"] == prompt_id(ctx)
    paris = resp.filter(pl.col("response") == "Paris.").row(0, named=True)
    lyon = resp.filter(pl.col("response") == "Lyon.").row(0, named=True)
    assert paris["prompt_id"] == lyon["prompt_id"]  # rows 2k, 2k+1 share a prompt
    ratings = table(ws, "hs2", "ratings")
    assert ratings.height == 15 and ratings["annotator_id"].null_count() == 15
    got = ratings.filter(pl.col("response_id") == lyon["response_id"]).sort("attribute")
    assert dict(zip(got["attribute"], got["score"])) == {"helpfulness": 1, "correctness": 0, "coherence": 4, "complexity": 1, "verbosity": 1}
    m = manifest(ws, "hs2")
    assert m["format"] == "helpsteer2" and m["tables"]["responses"] == 3 and m["tables"]["ratings"] == 15
    assert m["sources"][0]["records"] == 3 and m["sources"][0]["ingested"] == 3 and m["sources"][0]["quarantined"] == 0
    assert len(m["sources"][0]["sha256"]) == 64


def test_helpsteer1_explicit_format_and_rating_validation(ws, tmp_path):
    rows = [
        {"prompt": "p", "response": "ok", "helpfulness": 3, "correctness": 3, "coherence": 3, "complexity": 2, "verbosity": 2},
        {"prompt": "p", "response": "bad", "helpfulness": 5, "correctness": 3, "coherence": 3, "complexity": 2, "verbosity": 2},
        {"prompt": "p", "response": "frac", "helpfulness": 2.5, "correctness": 3, "coherence": 3, "complexity": 2, "verbosity": 2},
        {"prompt": "p", "response": "str", "helpfulness": "high", "correctness": 3, "coherence": 3, "complexity": 2, "verbosity": 2},
        {"prompt": "p", "response": "missing", "correctness": 3, "coherence": 3, "complexity": 2, "verbosity": 2},
    ]
    f = write_jsonl(tmp_path / "validation.jsonl", rows)
    assert ingest(ws, "hs1", f, fmt="helpsteer") == 0
    assert manifest(ws, "hs1")["format"] == "helpsteer"
    q = {r["line"]: r["reason"] for r in quarantine(ws, "hs1")}
    assert set(q) == {2, 3, 4, 5}
    assert "helpfulness" in q[2] and "0..4" in q[2]
    assert "2.5" in q[3]
    assert "expected a number" in q[4]
    assert "missing" in q[5]
    assert table(ws, "hs1", "responses")["split"].to_list() == ["validation"]


def test_helpsteer2_disagreements_per_annotator_rows(ws, tmp_path):
    rows = [{"prompt": "q", "response": "a", "helpfulness": [3, 4, 2], "correctness": [4, 4, 4], "coherence": [4, 3, 4], "complexity": [1, 1, 2], "verbosity": [2, 2, 1]},
            {"prompt": "q", "response": "b", "helpfulness": [0, 1, 7], "correctness": [0, 0, 0], "coherence": [1, 1, 1], "complexity": [0, 0, 0], "verbosity": [0, 0, 0]}]
    f = write_jsonl(tmp_path / "disagreements.jsonl.gz", rows, gz=True)
    assert ingest(ws, "dis", f) == 0
    assert manifest(ws, "dis")["format"] == "helpsteer2-disagreements"
    r = table(ws, "dis", "ratings")
    rid = response_id([{"role": "user", "content": "q"}], "a")
    assert r.height == 15
    h = r.filter(pl.col("attribute") == "helpfulness").sort("annotator_id")
    assert h["annotator_id"].to_list() == [f"anon:{rid}:0", f"anon:{rid}:1", f"anon:{rid}:2"]
    assert h["score"].to_list() == [3.0, 4.0, 2.0]
    (q,) = quarantine(ws, "dis")
    assert q["line"] == 2 and "helpfulness" in q["reason"] and "7" in q["reason"]


def test_helpsteer2_preference_aggregate_and_votes(ws, tmp_path):
    rows = [{"split": "train", "prompt": "Pick", "response_1": "one", "response_2": "two", "preference_strength": -2,
             "preference_statement": "@Response 1 is better.", "preference_elaboration": "It is shorter.",
             "three_most_similar_preferences": [], "all_preferences_unprocessed": [{"strength": -2, "justification": "r1"}, {"strength": -3, "justification": "r1!"}, {"strength": 1, "justification": "r2"}]}]
    f = write_jsonl(tmp_path / "preference.jsonl", rows)
    assert ingest(ws, "pref", f) == 0
    p = table(ws, "pref", "preferences")
    ctx = [{"role": "user", "content": "Pick"}]
    a, b = response_id(ctx, "one"), response_id(ctx, "two")
    assert set(p["response_a_id"]) == {a} and set(p["response_b_id"]) == {b}
    pair = p["pair_id"][0]
    agg = p.filter(pl.col("annotator_id").is_null())
    assert agg["strength"].to_list() == [-2.0] and "shorter" in agg["justification"][0]
    votes = p.filter(pl.col("annotator_id").is_not_null()).sort("annotator_id")
    assert votes["annotator_id"].to_list() == [f"anon:{pair}:0", f"anon:{pair}:1", f"anon:{pair}:2"]
    assert votes["strength"].to_list() == [-2.0, -3.0, 1.0]
    assert votes["justification"].to_list() == ["r1", "r1!", "r2"]
    assert table(ws, "pref", "responses")["split"].to_list() == ["train", "train"]


HS3_CTX = [{"role": "user", "content": "Write a haiku"}, {"role": "assistant", "content": "Leaves fall"}, {"role": "user", "content": "Another"}]


def test_helpsteer3_preference(ws, tmp_path):
    rows = [{"domain": "general", "language": "english", "context": HS3_CTX, "response1": "Snow melts", "response2": "Rain",
             "overall_preference": 2, "individual_preference": [{"score": 2, "reasoning": "2 better"}, {"score": 3, "reasoning": "much"}, {"score": -1, "reasoning": "1 better"}]}]
    f = write_jsonl(tmp_path / "train.jsonl.gz", rows, gz=True)
    assert ingest(ws, "hs3", f) == 0
    resp = table(ws, "hs3", "responses")
    assert resp.height == 2 and resp["context"].to_list()[0] == HS3_CTX and set(resp["domain"]) == {"general"} and set(resp["prompt"]) == {"Another"}
    p = table(ws, "hs3", "preferences")
    assert p.height == 4
    assert p.filter(pl.col("annotator_id").is_null())["strength"].to_list() == [2.0]
    assert sorted(p.filter(pl.col("annotator_id").is_not_null())["strength"].to_list()) == [-1.0, 2.0, 3.0]
    assert p["response_a_id"][0] == response_id(HS3_CTX, "Snow melts")


def test_helpsteer3_feedback_edit_edit_quality_principle(ws, tmp_path):
    fb = write_jsonl(tmp_path / "feedback" / "train.jsonl", [{"domain": "code", "language": "python", "context": HS3_CTX, "response1": "A", "response2": "B",
                                                              "feedback1": ["The response is mostly helpful.", "The response is perfectly helpful."], "feedback2": ["The response is not helpful."]}])
    assert ingest(ws, "fb", fb) == 0
    assert manifest(ws, "fb")["format"] == "helpsteer3-feedback"
    f = table(ws, "fb", "feedback")
    assert f.height == 3
    assert set(f.filter(pl.col("response_id") == response_id(HS3_CTX, "B"))["feedback"]) == {"The response is not helpful."}

    ed = write_jsonl(tmp_path / "edit" / "train.jsonl", [{"domain": "general", "language": "english", "context": HS3_CTX, "original_response": "orig",
                                                          "edited_response": "better", "feedback": ["too short"], "change_summary": "expanded"}])
    assert ingest(ws, "ed", ed) == 0
    e = table(ws, "ed", "edits").row(0, named=True)
    assert e["original_response_id"] == response_id(HS3_CTX, "orig") and e["edited_response_id"] == response_id(HS3_CTX, "better")
    assert e["change_summary"] == "expanded" and e["quality"] is None and e["feedback"] == ["too short"]
    assert table(ws, "ed", "responses").height == 2 and table(ws, "ed", "feedback")["feedback"].to_list() == ["too short"]

    eq = write_jsonl(tmp_path / "edit_quality" / "train.jsonl", [{"domain": "general", "language": "english", "context": HS3_CTX, "original_response": "orig",
                                                                  "good_edited_response": "good", "bad_edited_response": "bad", "feedback": ["f1", "f2"]}])
    assert ingest(ws, "eq", eq) == 0
    assert manifest(ws, "eq")["format"] == "helpsteer3-edit-quality"
    edits = table(ws, "eq", "edits").sort("quality")
    assert edits["quality"].to_list() == ["bad", "good"] and table(ws, "eq", "responses").height == 3

    pr = write_jsonl(tmp_path / "principle" / "train.jsonl", [
        {"domain": "general", "language": "english", "context": HS3_CTX, "response": "r", "principle": "The response is concise.", "fulfilment": "Yes"},
        {"domain": "general", "language": "english", "context": HS3_CTX, "response": "r", "principle": "The response rhymes.", "fulfilment": "No"},
        {"domain": "general", "language": "english", "context": HS3_CTX, "response": "r", "principle": "x", "fulfilment": "Maybe"}])
    assert ingest(ws, "pr", pr) == 0
    p = table(ws, "pr", "principles").sort("principle")
    assert p["fulfilment"].to_list() == [1.0, 0.0] and table(ws, "pr", "responses").height == 1
    assert "fulfilment" in quarantine(ws, "pr")[0]["reason"]


def test_hh_rlhf_transcripts(ws, tmp_path):
    rows = [
        {"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how to bake?\n\nAssistant: Use an oven.", "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how to bake?\n\nAssistant: No."},
        {"chosen": "\n\nHuman: q\n\nAssistant: good", "rejected": "\n\nHuman: other q\n\nAssistant: bad"},
        {"chosen": "\n\nHuman: q2\n\nAssistant: fine", "rejected": "\n\nHuman: q2\n\nAssistant:"},
        {"chosen": "\n\nHuman: same\n\nAssistant: x", "rejected": "\n\nHuman: same\n\nAssistant: x"},
    ]
    f = write_jsonl(tmp_path / "test.jsonl.gz", rows, gz=True)
    assert ingest(ws, "hh", f) == 0
    p = table(ws, "hh", "preferences")
    assert p.height == 3 and set(p["strength"]) == {-1.0} and p["annotator_id"].null_count() == 3
    ctx = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "how to bake?"}]
    assert response_id(ctx, "Use an oven.") in set(p["response_a_id"])
    assert p.filter(pl.col("flags").list.contains("context_mismatch")).height == 1
    resp = table(ws, "hh", "responses")
    assert resp.filter(pl.col("flags").list.contains("empty_response"))["response"].to_list() == [""]
    assert set(resp["split"]) == {"test"}
    (q,) = quarantine(ws, "hh")
    assert q["line"] == 4 and "identical" in q["reason"]


def test_trl_pairs_standard_and_conversational(ws, tmp_path):
    rows = [
        {"prompt": "Say hi", "chosen": "Hi!", "rejected": "No.", "margin": 2.0},
        {"prompt": [{"role": "user", "content": "Say bye"}], "chosen": [{"role": "assistant", "content": "Bye!"}], "rejected": [{"role": "assistant", "content": "..."}]},
        {"chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}], "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "B"}]},
    ]
    f = write_jsonl(tmp_path / "pairs.jsonl", rows)
    assert ingest(ws, "trl", f) == 0
    assert manifest(ws, "trl")["format"] == "pairs"
    p = table(ws, "trl", "preferences").sort("strength")
    assert p["strength"].to_list() == [-2.0, -1.0, -1.0]
    assert response_id([{"role": "user", "content": "Q"}], "A") in set(p["response_a_id"])
    assert response_id([{"role": "user", "content": "Say bye"}], "Bye!") in set(p["response_a_id"])


def test_rewardbench_rmbench_judgebench(ws, tmp_path):
    rb = write_jsonl(tmp_path / "rb.jsonl", [
        {"prompt": "p1", "chosen": "c", "chosen_model": "m1", "rejected": "r", "rejected_model": "m2", "subset": "alpacaeval-easy", "id": 7},
        {"prompt": "p2", "chosen": "c2", "chosen_model": "m1", "rejected": "r2", "rejected_model": "m2", "subset": "xstest-should-refuse", "id": 8}])
    assert ingest(ws, "rb", rb) == 0
    assert manifest(ws, "rb")["format"] == "rewardbench"  # superset of pairs: the specific one wins
    p = table(ws, "rb", "preferences").sort("pair_id")
    assert p["pair_id"].to_list() == ["rewardbench:7", "rewardbench:8"] and p["subset"].to_list() == ["alpacaeval-easy", "xstest-should-refuse"]
    assert set(table(ws, "rb", "responses")["model"]) == {"m1", "m2"}

    rm = write_jsonl(tmp_path / "rm.jsonl", [{"id": "x1", "prompt": "q", "chosen": ["c0", "c1", "c2"], "rejected": ["r0", "r1", "r2"], "domain": "chat"}])
    assert ingest(ws, "rm", rm) == 0
    p = table(ws, "rm", "preferences")
    assert p.height == 9 and sorted(zip(p["style_a"], p["style_b"])) == [(i, j) for i in range(3) for j in range(3)]
    resp = table(ws, "rm", "responses")
    assert dict(zip(resp["response"], resp["style"])) == {"c0": 0, "c1": 1, "c2": 2, "r0": 0, "r1": 1, "r2": 2}

    jb = write_jsonl(tmp_path / "jb.jsonl", [
        {"pair_id": "a1", "original_id": "o", "source": "mmlu-pro", "question": "q", "response_model": "gpt", "response_A": "x", "response_B": "y", "label": "B>A"},
        {"pair_id": "a2", "original_id": "o", "source": "mmlu-pro", "question": "q", "response_model": "gpt", "response_A": "x", "response_B": "z", "label": "A?B"}])
    assert ingest(ws, "jb", jb) == 0
    p = table(ws, "jb", "preferences")
    assert p["strength"].to_list() == [1.0] and p["subset"].to_list() == ["mmlu-pro"]
    assert "label" in quarantine(ws, "jb")[0]["reason"]


def test_pandalm_and_identical_items_stay_separate(ws, tmp_path):
    base = {"motivation_app": "Grammarly", "cmp_key": "llama-7b_opt-7b", "instruction": "Fix this", "input": "teh cat", "response1": "the cat", "response2": "teh cat"}
    rows = [dict(base, idx=0, annotator1=1, annotator2=1, annotator3=0), dict(base, idx=1, annotator1=2, annotator2=1, annotator3=1),
            dict(base, idx=2, response1=True, annotator1=1, annotator2=1, annotator3=1)]
    f = tmp_path / "testset.json"
    f.write_text(json.dumps(rows))
    assert ingest(ws, "panda", f) == 0
    p = table(ws, "panda", "preferences").sort("pair_id", "annotator_id")
    assert p["pair_id"].unique().to_list() == ["pandalm:0", "pandalm:1"] or sorted(p["pair_id"].unique()) == ["pandalm:0", "pandalm:1"]
    assert p.filter(pl.col("pair_id") == "pandalm:0")["strength"].to_list() == [-1.0, -1.0, 0.0]
    assert p.filter(pl.col("pair_id") == "pandalm:1")["strength"].to_list() == [1.0, -1.0, -1.0]
    assert set(p["annotator_id"]) == {"annotator1", "annotator2", "annotator3"}
    resp = table(ws, "panda", "responses")
    assert resp.height == 2 and set(resp["model"]) == {"llama-7b", "opt-7b"} and resp["prompt"][0] == "Fix this\n\nteh cat"
    (q,) = quarantine(ws, "panda")
    assert q["line"] == 3 and q["reason"] == "field 'response1': expected a string, got boolean true"


def test_llmfao_pairs_and_votes_in_one_call(ws, tmp_path):
    pairs = write_jsonl(tmp_path / "pairs-crowd.jsonl", [
        {"id": 0, "prompt": 8, "text": "Haiku please", "type": "reflexion", "slug": "k8s", "note": None, "model_x": 97, "result_x": "x text", "model_y": 98, "result_y": "y text"},
        {"id": 1, "prompt": 8, "text": "Haiku please", "type": "reflexion", "slug": "k8s", "note": None, "model_x": 29, "result_x": "", "model_y": 98, "result_y": "y text"}])
    votes = tmp_path / "crowd-comparisons.csv"
    votes.write_text("id,prompt,model_x,model_y,worker,winner,left,right\n0,8,97,98,58,tie,A,B\n0,8,97,98,83,left,A,B\n1,8,29,98,14,right,C,B\n5,8,1,2,14,left,D,E\n0,8,97,98,7,sideways,A,B\n")
    assert ingest(ws, "fao", votes, pairs) == 0  # order on the command line does not matter
    p = table(ws, "fao", "preferences").sort("pair_id", "annotator_id")
    assert p["pair_id"].to_list() == ["llmfao:0", "llmfao:0", "llmfao:1"]
    assert p["annotator_id"].to_list() == ["llmfao:58", "llmfao:83", "llmfao:14"]
    assert p["strength"].to_list() == [0.0, -1.0, 1.0]
    resp = table(ws, "fao", "responses")
    assert resp.height == 3  # "y text" is one response to the same prompt
    assert resp.filter(pl.col("flags").list.contains("empty_response")).height == 1
    q = {r["line"]: r["reason"] for r in quarantine(ws, "fao")}
    assert set(q) == {5, 6} and "not in the pairs file" in q[5] and "winner" in q[6]  # CSV header is line 1
    m = manifest(ws, "fao")
    assert {s["format"]: (s["records"], s["ingested"], s["quarantined"]) for s in m["sources"]} == {"llmfao-pairs": (2, 2, 0), "llmfao-votes": (5, 3, 2)}


def test_label_studio_json_and_min(ws, tmp_path):
    tasks = [{"id": 1, "data": {"prompt": "Q", "response": "A"}, "annotations": [
        {"id": 11, "completed_by": {"id": 2, "email": "ann@x.org"}, "was_cancelled": False, "updated_at": "2026-01-01T00:00:00Z",
         "result": [{"from_name": "helpfulness", "type": "choices", "value": {"choices": ["1"]}}]},
        {"id": 12, "completed_by": {"id": 2, "email": "ann@x.org"}, "was_cancelled": False, "updated_at": "2026-01-02T00:00:00Z",
         "result": [{"from_name": "helpfulness", "type": "choices", "value": {"choices": ["3"]}}, {"from_name": "coverage", "type": "choices", "value": {"choices": ["7"]}}]},
        {"id": 13, "completed_by": 5, "was_cancelled": True, "result": [{"from_name": "helpfulness", "type": "choices", "value": {"choices": ["0"]}}]},
        {"id": 14, "completed_by": 6, "was_cancelled": False, "result": [{"from_name": "helpfulness", "type": "choices", "value": {"choices": ["2"]}}]}]},
        {"id": 2, "data": {"messages": [{"role": "user", "content": "Q"}], "response_a": "A", "response_b": "B"}, "annotations": [
            {"id": 21, "completed_by": {"id": 2, "email": "ann@x.org"}, "result": [{"from_name": "preference", "type": "choices", "value": {"choices": ["-2"]}},
                                                                                  {"from_name": "justification", "type": "textarea", "value": {"text": ["A is right"]}}]}]},
        {"id": 3, "data": {"prompt": "Q", "response": "C"}, "annotations": [{"id": 31, "completed_by": 6, "result": [{"from_name": "helpfulness", "type": "choices", "value": {"choices": ["9"]}}]}]}]
    f = tmp_path / "export.json"
    f.write_text(json.dumps(tasks))
    assert ingest(ws, "ls", f) == 0
    r = table(ws, "ls", "ratings").sort("annotator_id", "attribute")
    rid = response_id([{"role": "user", "content": "Q"}], "A")
    assert r.select("annotator_id", "attribute", "score").rows() == [("ann@x.org", "coverage", 7.0), ("ann@x.org", "helpfulness", 3.0), ("label-studio:6", "helpfulness", 2.0)]
    assert set(r["response_id"]) == {rid}
    p = table(ws, "ls", "preferences").row(0, named=True)
    assert p["strength"] == -2.0 and p["justification"] == "A is right" and p["annotator_id"] == "ann@x.org"
    (q,) = quarantine(ws, "ls")
    assert q["line"] == 3 and "out of range" in q["reason"]

    mini = [{"id": 1, "prompt": "Q", "response": "A", "helpfulness": "4", "annotator": "b@x.org", "annotation_id": 5, "updated_at": "2026-01-01"},
            {"id": 1, "prompt": "Q", "response": "A", "helpfulness": "2", "annotator": "b@x.org", "annotation_id": 6, "updated_at": "2026-01-03"}]
    g = tmp_path / "min.json"
    g.write_text(json.dumps(mini))
    assert ingest(ws, "lsmin", g, fmt="label-studio") == 0
    r = table(ws, "lsmin", "ratings")
    assert r.select("annotator_id", "attribute", "score").rows() == [("b@x.org", "helpfulness", 2.0)]
    assert "superseded" in quarantine(ws, "lsmin")[0]["reason"]


@pytest.mark.parametrize("container", ["jsonl", "jsonl.gz", "json", "parquet", "csv", "hf"])
def test_containers_give_identical_datasets(ws, tmp_path, container):
    rows = [{"prompt": f"q{i}", "response": f"r{i}", "helpfulness": i % 5, "correctness": 4, "coherence": 3, "complexity": 1, "verbosity": 0} for i in range(7)]
    ref = write_jsonl(tmp_path / "ref" / "train.jsonl", rows)
    path = tmp_path / "c" / f"train.{container}"
    path.parent.mkdir()
    df = pl.DataFrame(rows)
    if container == "jsonl":
        write_jsonl(path, rows)
    elif container == "jsonl.gz":
        write_jsonl(path, rows, gz=True)
    elif container == "json":
        path.write_text(json.dumps(rows))
    elif container == "parquet":
        df.write_parquet(path)
    elif container == "csv":
        df.write_csv(path)
    else:
        import datasets

        path = tmp_path / "c" / "train_hf"
        datasets.Dataset.from_list(rows).save_to_disk(str(path))
    assert ingest(ws, "ref", ref) == 0
    assert ingest(ws, "got", path, fmt="helpsteer2") == 0
    for t in ("responses", "ratings"):
        a = table(ws, "ref", t).drop("source", "split", strict=False).sort(pl.all())
        b = table(ws, "got", t).drop("source", "split", strict=False).sort(pl.all())
        assert a.equals(b), t
    assert manifest(ws, "got")["sources"][0]["records"] == 7


def test_reingest_gives_same_ids_and_shared_responses_merge(ws, tmp_path):
    rows = [{"prompt": "q", "response": "r", "helpfulness": 1, "correctness": 1, "coherence": 1, "complexity": 1, "verbosity": 1}]
    f = write_jsonl(tmp_path / "a" / "train.jsonl", rows)
    g = write_jsonl(tmp_path / "b" / "validation.jsonl", rows)
    assert ingest(ws, "one", f) == 0 and ingest(ws, "two", f) == 0
    assert table(ws, "one", "responses")["response_id"].to_list() == table(ws, "two", "responses")["response_id"].to_list()
    assert ingest(ws, "both", f, g) == 0
    assert table(ws, "both", "responses").height == 1  # same response to the same conversation in two files
    assert table(ws, "both", "ratings").height == 10
    assert stable_hash("a", "b") != stable_hash("ab")


@pytest.mark.parametrize("text", [
    "Hi there<extra_id_1>Assistant\nHello!\n<extra_id_1>User\nWhat is 2+2?",
    "first\n<extra_id_1>Assistant\nsecond\n<extra_id_1>User\nthird\n",
    "<extra_id_1>User\nonly user",
    "plain prompt",
    "a\n<extra_id_1>Assistant\n\n<extra_id_1>User\nb",
])
def test_vectorised_multiturn_parse_equals_reference(text):
    from helpsteer.formats.helpsteer import parse_extra_id_prompt, prompt_context

    df = prompt_context(pl.DataFrame({"prompt": [text, "x"], "_line": [1, 2]}))
    assert df["context"].to_list()[0] == parse_extra_id_prompt(text)


# --- LLMBar, SQuALITY, WQRM, TTCW on tiny hand-made files (the real ones: tests/test_real_datasets.py) --
def test_llmbar_subset_from_folder_and_gold_strength(ws, tmp_path):
    rows = [{"input": "Q", "output_1": "good", "output_2": "bad", "label": 1}, {"input": "Q", "output_1": "x", "output_2": "y", "label": 2},
            {"input": "Q", "output_1": "z", "output_2": "z", "label": 1}]
    f = tmp_path / "Neighbor" / "dataset.json"
    f.parent.mkdir()
    f.write_text(json.dumps(rows))
    assert ingest(ws, "bar", f) == 0
    p = table(ws, "bar", "preferences").sort("strength")
    assert p.select("subset", "annotator_id", "strength").rows() == [("Neighbor", None, -1.0), ("Neighbor", None, 1.0)]
    assert p["response_a_id"][0] == response_id([{"role": "user", "content": "Q"}], "good")
    assert [(q["line"], q["reason"]) for q in quarantine(ws, "bar")] == [(3, "output_1 is identical to output_2")]


def _squality_line(pid: str, score: int = 50) -> dict:
    review = lambda w: {"worker_id": w, "correctness-rating": score, "selection-rating": 20, "overall-rating": 30,  # noqa: E731
                        "annotations": [{"selection": "span", "annotation": ["too short"]}]}
    return {"passage-id": pid, "questions": {"0": {s: {"response": f"{s} summary", "reviews": [review("2"), review("3")]} for s in ("bart", "human")}}}


def test_squality_joins_questions_beside_and_keeps_the_0_100_scale(ws, tmp_path):
    data = tmp_path / "data"
    write_jsonl(data / "v1-3" / "txt" / "test.jsonl", [{"metadata": {"passage_id": "7"}, "document": "A story.", "questions": [{"question_text": "What happens?"}]}])
    f = write_jsonl(data / "human-eval" / "all-responses.jsonl", [_squality_line("7"), _squality_line("8"), _squality_line("7", score=120)])
    assert ingest(ws, "sq", f) == 0
    resp = table(ws, "sq", "responses")
    joined = resp.filter(pl.col("prompt") == "What happens?")
    assert sorted(joined["model"]) == ["bart", "human"] and joined["flags"].list.len().sum() == 0
    assert joined["context"].to_list()[0] == [{"role": "system", "content": "A story."}, {"role": "user", "content": "What happens?"}]
    missing = resp.filter(pl.col("prompt") == "SQuALITY passage 8, question 1")  # passage 8 is not in the split file
    assert missing.height == 2 and missing["flags"].to_list() == [["no_question_text"]] * 2
    r = table(ws, "sq", "ratings")
    assert r.height == 2 * 2 * 2 * 3 and set(r["annotator_id"]) == {"squality:2", "squality:3"} and set(r["score"]) == {50.0, 20.0, 30.0}
    assert table(ws, "sq", "feedback")["feedback"][0] == "> span\ntoo short"
    (q,) = quarantine(ws, "sq")
    assert (q["line"], q["reason"]) == (3, "field 'questions.0.bart.reviews[0].correctness-rating': correctness-rating 120 is not a number in 0..100")


def test_wqrm_rankings_to_votes(ws, tmp_path):
    ranks = ("Most Preferred Writing Option", "Second Favorite Writing Option", "Least Preferred Writing Option")
    item = {"id": "t1", "genre": "fiction", "llm": "gpt", "instruction": {"plot": "A plot", "voice": "first person", "word_count": 50},
            "first_draft": {"candidate": "d0"}, "random_cot": {"candidate": "d1"}, "best_cot": {"candidate": "d2"},
            "annotations": [dict(zip(("best_cot", "random_cot", "first_draft"), ranks)), dict(zip(("first_draft", "best_cot", "random_cot"), ranks))]}
    bad = dict(item, id="t2", annotations=[{"first_draft": "Best", "random_cot": ranks[1], "best_cot": ranks[2]}])
    f = tmp_path / "WQRM_annotations.json"
    f.write_text(json.dumps([item, bad]))
    assert ingest(ws, "wq", f) == 0
    p = table(ws, "wq", "preferences").sort("pair_id", "annotator_id")
    assert p.select("pair_id", "annotator_id", "strength").rows() == [
        ("wqrm:t1:0-1", "anon:t1:0", 1.0), ("wqrm:t1:0-1", "anon:t1:1", -1.0), ("wqrm:t1:0-2", "anon:t1:0", 1.0), ("wqrm:t1:0-2", "anon:t1:1", -1.0),
        ("wqrm:t1:1-2", "anon:t1:0", 1.0), ("wqrm:t1:1-2", "anon:t1:1", 1.0)]
    resp = table(ws, "wq", "responses")
    assert set(resp["prompt"]) == {"Write a fiction paragraph of about 50 words in the first person: A plot"}
    assert sorted(resp["model"]) == ["gpt/best_cot", "gpt/first_draft", "gpt/random_cot"]
    (q,) = quarantine(ws, "wq")
    assert q["line"] == 2 and q["reason"].startswith("field 'annotations[0].first_draft': 'Best' is not one of Most Preferred Writing Option, ")


def test_ttcw_stories_annotations_tests_and_a_link_only_story(ws, tmp_path):
    base = tmp_path / "Art_or_Artifice"
    stories = [{"story_idx": 0, "story_id": "0_GPT4", "story_name": "T", "plot": "P", "content": "Once upon a time."},
               {"story_idx": 0, "story_id": "0_NewYorker", "story_name": "T", "plot": "P", "content": "https://www.newyorker.com/x"}]
    ann = [{"story_id": "0_GPT4", "expert_idx": 1, "ttcw_idx": 1, "category": "Narrative Ending", "binary_verdict": "Yes", "explanation": "earned"},
           {"story_id": "0_GPT4", "expert_idx": 2, "ttcw_idx": 1, "category": "Narrative Ending", "binary_verdict": "No", "explanation": "abrupt"},
           {"story_id": "0_NewYorker", "expert_idx": 1, "ttcw_idx": 1, "category": "Narrative Ending", "binary_verdict": "Yes", "explanation": "fine"},
           {"story_id": "0_GPT4", "expert_idx": 3, "ttcw_idx": 1, "category": "Narrative Ending", "binary_verdict": "Maybe", "explanation": "?"}]
    tests = [{"ttcw_idx": "1", "torrance_dimension": "Fluency", "category": "Narrative Ending", "question": "Is the ending earned?", "full_prompt": "..."}]
    for rel, rows in (("stories/s.json", stories), ("annotations/a.json", ann), ("tests/ttcw_all_tests.json", tests)):
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(json.dumps(rows))
    assert ingest(ws, "tt", base / "annotations" / "a.json", base / "stories" / "s.json") == 0  # tests found beside them
    pr = table(ws, "tt", "principles").sort("annotator_id")
    rid = response_id([{"role": "user", "content": 'Write a short story titled "T". Plot: P'}], "Once upon a time.")
    assert pr.select("response_id", "annotator_id", "principle", "fulfilment", "explanation").rows() == [
        (rid, "ttcw:expert1", "Is the ending earned?", 1.0, "earned"), (rid, "ttcw:expert2", "Is the ending earned?", 0.0, "abrupt")]
    assert table(ws, "tt", "ratings").sort("annotator_id").select("attribute", "score").rows() == [("narrative_ending", 1.0), ("narrative_ending", 0.0)]
    q = {(Path(r["source"]).name, r["line"]): r["reason"] for r in quarantine(ws, "tt")}
    assert q == {("s.json", 2): "field 'content': a link, not the story text (the New Yorker stories are not redistributed; their annotations "
                                "are quarantined with them), got https://www.newyorker.com/x",
                 ("a.json", 3): "field 'story_id': its story was quarantined in the stories file, got 0_NewYorker (line 2 there)",
                 ("a.json", 4): "field 'binary_verdict': expected Yes or No, got Maybe"}
