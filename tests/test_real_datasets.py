"""All seven datasets in ../shared/data ingest as a whole folder with `--format auto`, with the
exact counts of their SOURCE.md (or of an independent plain-json reading of the raw files where
SOURCE.md gives none); the files no reader takes are skipped with their reason; `analyze` gives
agreement wherever several annotators exist."""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from conftest import manifest, quarantine, run_cli, shared, table

from helpsteer.analyze import AnalysisConfig, run_analysis


def ingest_folder(ws, folder: Path, name: str, *extra) -> int:
    return run_cli("ingest", folder, "--workspace", ws, "--name", name, *extra)


def counts(ws, name: str) -> dict:
    m = manifest(ws, name)
    return {**{t: n for t, n in m["tables"].items() if n}, "quarantined": sum(s["quarantined"] for s in m["sources"])}


def sources(ws, name: str, root: Path) -> dict:
    """path under root -> (format, records, ingested, quarantined), with records == ingested + quarantined checked."""
    out = {}
    for s in manifest(ws, name)["sources"]:
        assert s["records"] == s["ingested"] + s["quarantined"]
        out[str(Path(s["path"]).relative_to(root))] = (s["format"], s["records"], s["ingested"], s["quarantined"])
    return out


def skipped(ws, name: str) -> dict:
    return {Path(s["path"]).name: s["reason"] for s in manifest(ws, name).get("skipped", [])}


def analysis(ws, name: str) -> dict:
    return run_analysis(ws, name, AnalysisConfig(n_bootstrap=50))


def value(stat: dict) -> float | None:
    return stat["value"]


# --- the two pairwise sets that already ingested before --------------------------------------------
def test_hh_rlhf_folder(ws):
    folder = shared("hh-rlhf-harmless-test")
    assert ingest_folder(ws, folder, "hh") == 0
    assert sources(ws, "hh", folder) == {"harmless-base/test.jsonl.gz": ("hh-rlhf", 2312, 2312, 0)}  # SOURCE.md: 2,312 JSON lines
    assert counts(ws, "hh") == {"responses": 4624, "preferences": 2312, "quarantined": 0}
    assert skipped(ws, "hh") == {"LICENSE": "not a data file (no extension)", "README.md": "not a data file (.md)", "SOURCE.md": "not a data file (.md)"}


def test_pandalm_folder_and_agreement(ws):
    folder = shared("pandalm-testset")
    raw = json.loads((folder / "data" / "testset-v1.json").read_text())
    assert ingest_folder(ws, folder, "panda") == 0
    assert sources(ws, "panda", folder) == {"data/testset-v1.json": ("pandalm", 999, 993, 6)}  # 6 items with a boolean or identical response
    kept = [r for r in raw if isinstance(r["response1"], str) and isinstance(r["response2"], str) and r["response1"] != r["response2"]]
    texts = {(r["instruction"] if not r["input"].strip() else f"{r['instruction']}\n\n{r['input']}", x) for r in kept for x in (r["response1"], r["response2"])}
    assert counts(ws, "panda") == {"responses": len(texts), "preferences": 3 * 993, "quarantined": 6}
    prefs = table(ws, "panda", "preferences")
    assert Counter(prefs["annotator_id"]) == {"annotator1": 993, "annotator2": 993, "annotator3": 993}
    ag = analysis(ws, "panda")["preferences"]
    assert ag["n_annotated_pairs"] == 993 and value(ag["alpha_interval"]) > 0.8 and value(ag["kappa_quadratic"]) > 0.8


# --- LLMFAO: crowd votes in; judge CSVs, training pairs and prompts skipped with their reason -------
def test_llmfao_folder_skips_judges_and_lists_every_skipped_file(ws, capsys):
    folder = shared("llmfao-crowd")
    assert ingest_folder(ws, folder, "fao") == 0
    err = capsys.readouterr().err
    assert sources(ws, "fao", folder) == {"models.jsonl": ("llmfao-models", 70, 70, 0), "pairs-crowd.jsonl": ("llmfao-pairs", 2139, 2139, 0),
                                  "crowd-comparisons.csv": ("llmfao-votes", 8931, 8931, 0)}
    raw_pairs = [json.loads(line) for line in (folder / "pairs-crowd.jsonl").open(encoding="utf-8")]
    texts = {(p["text"], p[k]) for p in raw_pairs for k in ("result_x", "result_y")}
    assert counts(ws, "fao") == {"responses": len(texts), "preferences": 8931, "quarantined": 0}
    prefs = table(ws, "fao", "preferences")
    assert prefs["annotator_id"].n_unique() == 124 and not prefs["annotator_id"].str.starts_with("judge:").any()
    assert Counter(prefs["strength"].to_list()) == {0.0: 3471, -1.0: 2911, 1.0: 2549}  # SOURCE.md: tie, left, right
    assert Counter(prefs.group_by("pair_id").len()["len"].to_list()) == {5: 998, 4: 658, 3: 358, 2: 110, 1: 15}
    judge = ("LLM-judge verdicts (one GPT-4/3.5 verdict per pair, no worker column), not crowd votes: analysis would count the judge as an annotator. "
             "Ingest them into a dataset of their own: helpsteer ingest pairs-crowd.jsonl FILE --name NAME")
    sk = skipped(ws, "fao")
    assert sk == {
        "LICENSE.CC-BY": "not a data file (.CC-BY)", "README.md": "not a data file (.md)", "SOURCE.md": "not a data file (.md)",
        "crowd-instruction.md": "not a data file (.md)", "gpt3-crowd-comparisons.csv": judge, "gpt4-crowd-comparisons.csv": judge,
        "pairs-crowd-training.jsonl": "LLMFAO annotator-training pairs (golden answers shown to train the crowd workers), not part of the crowd data; "
                                      "give the file explicitly to read them as gold pairs",
        "prompts.jsonl": sk["prompts.jsonl"]}
    assert sk["prompts.jsonl"].startswith("record fields [id, text, type, slug, stop, note] match no known format.")
    for name, reason in sk.items():  # each on its own stderr line
        assert f"skipped {folder / name}: {reason}" in err.splitlines()
    ag = analysis(ws, "fao")["preferences"]
    assert ag["n_annotated_pairs"] == 2139 - 15 and value(ag["alpha_interval"]) is not None and value(ag["kappa_quadratic"]) is not None
    assert 0 < value(ag["diverging_rate"]) < 1


def test_llmfao_folder_strict_fails_on_the_first_skipped_file(ws, capsys):
    folder = shared("llmfao-crowd")
    assert ingest_folder(ws, folder, "fao", "--strict") == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {folder / 'LICENSE.CC-BY'}: not a data file (.CC-BY) (--strict: every file of a folder must be ingestable; nothing was written)")
    assert not (ws / "datasets" / "fao").exists()


def test_llmfao_judge_csv_given_explicitly_is_judge_labels_never_crowd_votes(ws, capsys):
    folder = shared("llmfao-crowd")
    pairs, gpt4, crowd = folder / "pairs-crowd.jsonl", folder / "gpt4-crowd-comparisons.csv", folder / "crowd-comparisons.csv"
    assert run_cli("ingest", pairs, gpt4, "--workspace", ws, "--name", "gpt4") == 0
    prefs = table(ws, "gpt4", "preferences")
    assert prefs.height == 2139 and set(prefs["annotator_id"]) == {"judge:gpt4-crowd-comparisons"}
    assert prefs["flags"].list.contains("llm_judge").all()
    assert Counter(prefs["strength"].to_list()) == {1.0: 1130, -1.0: 943, 0.0: 66}  # SOURCE.md: GPT-4 right, left, tie
    capsys.readouterr()
    assert run_cli("ingest", pairs, crowd, gpt4, "--workspace", ws, "--name", "mixed") == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        f"error: {gpt4} (llmfao-judge) cannot be ingested together with {crowd} (llmfao-votes): LLM-judge verdicts")
    training = folder / "pairs-crowd-training.jsonl"
    raw = [json.loads(line) for line in training.open(encoding="utf-8")]
    assert run_cli("ingest", training, "--workspace", ws, "--name", "train") == 0
    gold = table(ws, "train", "preferences")
    assert gold.height == len(raw) == 7 and gold["annotator_id"].null_count() == 7
    assert sorted(gold["strength"].to_list()) == sorted({"left": -1.0, "right": 1.0, "tie": 0.0}[r["golden"]] for r in raw)


# --- LLMBar ---------------------------------------------------------------------------------------
LLMBAR_LABELS = {"Natural": {2: 58, 1: 42}, "Neighbor": {1: 75, 2: 59}, "GPTInst": {2: 47, 1: 45}, "GPTOut": {2: 25, 1: 22},
                 "Manual": {2: 24, 1: 22}, "MT-Bench": {1: 101, 2: 99}}  # SOURCE.md "Label balance"


def test_llmbar_folder_subsets_and_gold_labels(ws):
    folder = shared("llmbar")
    assert ingest_folder(ws, folder / "Dataset", "bar") == 0
    n = {s: sum(v.values()) for s, v in LLMBAR_LABELS.items()}
    where = {"Natural": "LLMBar/Natural", "MT-Bench": "Processed/MT-Bench"}
    assert sources(ws, "bar", folder / "Dataset") == {f"{where.get(s, 'LLMBar/Adversarial/' + s)}/dataset.json": ("llmbar", k, k, 0) for s, k in n.items()}
    raw = [r for f in sorted((folder / "Dataset").rglob("dataset.json")) for r in json.loads(f.read_text())]
    texts = {(r["input"], r[k]) for r in raw for k in ("output_1", "output_2")}
    assert counts(ws, "bar") == {"responses": len(texts), "preferences": 619, "quarantined": 0}
    prefs = table(ws, "bar", "preferences")
    got = {s: dict(Counter(g["strength"].to_list())) for (s,), g in prefs.group_by(["subset"])}
    assert got == {s: {-1.0: v[1], 1.0: v[2]} for s, v in LLMBAR_LABELS.items()}  # label 1 = output_1 better = -1
    assert prefs["annotator_id"].null_count() == 619  # gold labels, not votes
    # the whole dataset folder too: LICENSE, README.md and SOURCE.md skipped
    assert ingest_folder(ws, folder, "bar2") == 0
    assert counts(ws, "bar2") == counts(ws, "bar") and set(skipped(ws, "bar2")) == {"LICENSE", "README.md", "SOURCE.md"}


# --- SQuALITY -------------------------------------------------------------------------------------
def test_squality_folder_ratings_on_0_100_with_question_texts(ws):
    folder = shared("squality-human-eval")
    assert ingest_folder(ws, folder, "sq") == 0
    assert sources(ws, "sq", folder / "data") == {"human-eval/all-responses.jsonl": ("squality", 20, 20, 0),  # SOURCE.md: 20 lines, 36 and 52 stories
                                                 "v1/test.jsonl": ("squality-stories", 36, 36, 0), "v1-3/txt/test.jsonl": ("squality-stories", 52, 52, 0)}
    c = counts(ws, "sq")
    assert (c["responses"], c["ratings"], c["quarantined"]) == (300, 2700, 0)  # SOURCE.md: 300 responses, 2,700 ratings
    r = table(ws, "sq", "ratings")
    means = {a: round(g["score"].mean(), 1) for (a,), g in r.group_by(["attribute"])}
    assert means == {"correctness": 58.1, "coverage": 42.9, "overall": 45.8}  # SOURCE.md means, on the source's 0-100 scale
    assert Counter(r["annotator_id"]) == {f"squality:{w}": 225 * 3 for w in ("2", "3", "6", "8")}  # 225 reviews each
    assert manifest(ws, "sq")["scales"] == {"correctness": [0.0, 100.0], "coverage": [0.0, 100.0], "overall": [0.0, 100.0]}
    resp = table(ws, "sq", "responses")
    assert resp["flags"].list.len().sum() == 0 and resp["prompt_id"].n_unique() == 100 and Counter(resp["model"]) == {"bart": 100, "bart-dpr": 100, "human": 100}
    # the question text joined from the split file: key "i" is list index i of that passage's questions
    line = json.loads((folder / "data" / "human-eval" / "all-responses.jsonl").open().readline())
    story = next(json.loads(s) for s in (folder / "data" / "v1" / "test.jsonl").open() if json.loads(s)["metadata"]["passage_id"] == line["passage-id"])
    human = resp.filter(pl.col("response") == line["questions"]["2"]["human"]["response"]).row(0, named=True)
    assert human["prompt"] == story["questions"][2]["question_text"] and human["context"][0]["role"] == "system"
    ratings = analysis(ws, "sq")["ratings"]
    assert set(ratings) == {"correctness", "coverage", "overall"}
    for attr in ratings.values():
        assert attr["n_items"] == 300 and attr["n_annotators"] == 4
        assert value(attr["alpha_interval"]) is not None and value(attr["kappa_quadratic"]) is not None


def test_squality_ratings_file_alone_finds_the_questions_beside_it(ws):
    path = shared("squality-human-eval", "data", "human-eval", "all-responses.jsonl")
    assert run_cli("ingest", path, "--workspace", ws, "--name", "sq1") == 0
    assert (counts(ws, "sq1")["responses"], counts(ws, "sq1")["ratings"]) == (300, 2700)
    assert table(ws, "sq1", "responses")["flags"].list.len().sum() == 0


# --- WQRM -----------------------------------------------------------------------------------------
def test_wqrm_folder_rankings_become_votes(ws):
    folder = shared("wqrm-writing-rankings")
    raw = json.loads((folder / "WritingRewards" / "WQRM_annotations.json").read_text())
    assert ingest_folder(ws, folder, "wq") == 0
    assert sources(ws, "wq", folder) == {"WritingRewards/WQRM_annotations.json": ("wqrm", 101, 101, 0)}
    assert counts(ws, "wq") == {"responses": 303, "preferences": 840, "quarantined": 0}  # 280 rankings x 3 pairs
    prefs = table(ws, "wq", "preferences")
    assert prefs["pair_id"].n_unique() == 303
    assert Counter(prefs.group_by("pair_id").len()["len"].to_list()) == {3: 72 * 3, 2: 26 * 3, 4: 3 * 3}  # SOURCE.md annotators per item
    rank = {"Most Preferred Writing Option": 1, "Second Favorite Writing Option": 2, "Least Preferred Writing Option": 3}
    drafts = ("first_draft", "random_cot", "best_cot")
    want = Counter()
    for item in raw:
        for k, a in enumerate(item["annotations"]):
            for i in range(3):
                for j in range(i + 1, 3):
                    want[(f"wqrm:{item['id']}:{i}-{j}", f"anon:{item['id']}:{k}", -1.0 if rank[a[drafts[i]]] < rank[a[drafts[j]]] else 1.0)] += 1
    assert Counter(prefs.select("pair_id", "annotator_id", "strength").rows()) == want
    first = raw[0]
    resp = table(ws, "wq", "responses")
    assert set(resp.filter(pl.col("response") == first["best_cot"]["candidate"])["model"]) == {f"{first['llm']}/best_cot"}
    ag = analysis(ws, "wq")["preferences"]
    assert ag["n_annotated_pairs"] == 303 and value(ag["alpha_interval"]) is not None and value(ag["diverging_rate"]) is not None
    assert value(ag["kappa_quadratic"]) is None and "anonymous" in ag["kappa_quadratic"]["reason"]  # no annotator ids in the source


# --- TTCW -----------------------------------------------------------------------------------------
def test_ttcw_folder_principles_with_explanations_and_ratings(ws):
    folder = shared("ttcw-creativity")
    base = folder / "Art_or_Artifice"
    ann = json.loads((base / "annotations" / "ttcw_annotations.json").read_text())
    tests = {int(t["ttcw_idx"]): t for t in json.loads((base / "tests" / "ttcw_all_tests.json").read_text())}
    assert ingest_folder(ws, folder, "tt") == 0
    # the 12 New Yorker stories are links, not texts: quarantined, and their annotations with them
    assert sources(ws, "tt", base) == {"tests/ttcw_all_tests.json": ("ttcw-tests", 14, 14, 0), "stories/ttcw_short_stories.json": ("ttcw-stories", 48, 36, 12),
                                       "annotations/ttcw_annotations.json": ("ttcw-annotations", 2016, 1512, 504),
                                       "annotations/ttcw_majority.json": ("ttcw-majority", 672, 504, 168)}
    assert counts(ws, "tt") == {"responses": 36, "ratings": 1512, "principles": 1512 + 504, "quarantined": 12 + 504 + 168}
    q = quarantine(ws, "tt")
    assert all("newyorker.com" in r["reason"] for r in q if r["source"].endswith("ttcw_short_stories.json"))
    llm = [a for a in ann if not a["story_id"].endswith("_NewYorker")]
    pr = table(ws, "tt", "principles")
    experts = pr.filter(pl.col("annotator_id").is_not_null())
    assert experts.height == len(llm) == 1512 and pr["annotator_id"].null_count() == 504  # the majority file: consensus rows
    assert Counter(experts["fulfilment"].to_list()) == Counter(1.0 if a["binary_verdict"] == "Yes" else 0.0 for a in llm)
    assert Counter(experts.select("annotator_id", "principle", "explanation").rows()) == Counter(
        (f"ttcw:expert{a['expert_idx']}", tests[a["ttcw_idx"]]["question"], a["explanation"]) for a in llm)
    assert experts["annotator_id"].n_unique() == len({a["expert_idx"] for a in llm})
    ratings = table(ws, "tt", "ratings")
    assert ratings["attribute"].n_unique() == 14 and set(ratings["score"]) == {0.0, 1.0}
    ag = analysis(ws, "tt")["ratings"]
    assert len(ag) == 14 and all(a["n_items"] == 36 and a["n_annotators"] >= 3 and value(a["alpha_interval"]) is not None for a in ag.values())


def test_ttcw_stories_and_annotations_in_one_call(ws):
    base = shared("ttcw-creativity", "Art_or_Artifice")
    stories, ann = base / "stories" / "ttcw_short_stories.json", base / "annotations" / "ttcw_annotations.json"
    assert run_cli("ingest", ann, stories, "--workspace", ws, "--name", "tt2") == 0  # order on the command line does not matter
    assert counts(ws, "tt2") == {"responses": 36, "ratings": 1512, "principles": 1512, "quarantined": 12 + 504}
    # the test questions come from tests/ttcw_all_tests.json beside the annotations
    assert table(ws, "tt2", "principles")["principle"].str.ends_with("?").all()
    assert run_cli("ingest", ann, "--workspace", ws, "--name", "tt3") == 2  # annotations without their stories: nothing ingestable


@pytest.mark.parametrize("dataset, files", [
    ("llmfao-crowd", ["pairs-crowd.jsonl", "crowd-comparisons.csv"]),
    ("wqrm-writing-rankings", ["WritingRewards/WQRM_annotations.json"]),
    ("llmbar", ["Dataset/LLMBar/Natural/dataset.json"]),
    ("hh-rlhf-harmless-test", ["harmless-base/test.jsonl.gz"]),
])
def test_documented_files_ingest_with_format_auto(ws, dataset, files):
    paths = [shared(dataset, *f.split("/")) for f in files]
    assert run_cli("ingest", *paths, "--workspace", ws, "--name", "d") == 0
    assert all(s["ingested"] > 0 for s in manifest(ws, "d")["sources"])


def test_raw_counts_match_source_md():
    """The independent reading the tests above rely on agrees with SOURCE.md itself."""
    fao = shared("llmfao-crowd")
    assert sum(1 for _ in csv.DictReader((fao / "crowd-comparisons.csv").open(encoding="utf-8"))) == 8931
    hh = shared("hh-rlhf-harmless-test", "harmless-base", "test.jsonl.gz")
    assert sum(1 for _ in gzip.open(hh, "rt", encoding="utf-8")) == 2312
    wq = json.loads(shared("wqrm-writing-rankings", "WritingRewards", "WQRM_annotations.json").read_text())
    assert (len(wq), sum(len(x["annotations"]) for x in wq)) == (101, 280)
