"""`helpsteer synth`: deterministic, the real layouts, and the planted structure is there."""

from __future__ import annotations

import gzip
import json

import numpy as np
import polars as pl
from conftest import manifest, run_cli, table

from helpsteer.synth import SynthConfig, write_synthetic


def _read_gz(path):
    return [json.loads(line) for line in gzip.open(path, "rt")]


def test_deterministic_for_a_seed(tmp_path):
    a = write_synthetic(SynthConfig(seed=5, n_prompts=40), tmp_path / "a")
    b = write_synthetic(SynthConfig(seed=5, n_prompts=40), tmp_path / "b")
    c = write_synthetic(SynthConfig(seed=6, n_prompts=40), tmp_path / "c")
    for kind in ("helpsteer2-disagreements", "helpsteer2-preference", "helpsteer3-preference-train"):
        assert gzip.decompress(a[kind].read_bytes()) == gzip.decompress(b[kind].read_bytes())
    assert a["label-studio"].read_bytes() == b["label-studio"].read_bytes()
    assert _read_gz(a["helpsteer2-disagreements"]) == _read_gz(b["helpsteer2-disagreements"])
    assert _read_gz(a["helpsteer2-disagreements"]) != _read_gz(c["helpsteer2-disagreements"])


def test_layouts_match_the_real_schemas(synth_dir):
    hs2 = _read_gz(synth_dir / "helpsteer2" / "train.jsonl.gz")
    assert set(hs2[0]) == {"prompt", "response", "helpfulness", "correctness", "coherence", "complexity", "verbosity"}
    assert all(isinstance(r["helpfulness"], int) and 0 <= r["helpfulness"] <= 4 for r in hs2)
    dis = _read_gz(synth_dir / "helpsteer2" / "disagreements" / "disagreements.jsonl.gz")
    assert all(3 <= len(r["helpfulness"]) <= 5 and len(r["helpfulness"]) == len(r["verbosity"]) for r in dis)
    assert any("<extra_id_1>Assistant" in r["prompt"] for r in dis)  # multi-turn contexts
    pref = _read_gz(synth_dir / "helpsteer2" / "preference" / "preference.jsonl.gz")
    assert {"prompt", "response_1", "response_2", "preference_strength", "all_preferences_unprocessed", "split"} <= set(pref[0])
    hs3 = _read_gz(synth_dir / "helpsteer3" / "preference" / "train.jsonl.gz")
    assert {"domain", "language", "context", "response1", "response2", "overall_preference", "individual_preference"} <= set(hs3[0])
    ls = json.loads((synth_dir / "label_studio" / "ratings_export.json").read_text())
    assert ls[0]["annotations"][0]["completed_by"]["email"].endswith("@example.com")


def test_label_studio_export_carries_the_same_ratings_as_disagreements(synth_dir, ws):
    assert run_cli("ingest", synth_dir / "helpsteer2" / "disagreements" / "disagreements.jsonl.gz", "--workspace", ws, "--name", "dis") == 0
    assert run_cli("ingest", synth_dir / "label_studio" / "ratings_export.json", "--workspace", ws, "--name", "ls") == 0
    key = ["response_id", "attribute"]
    a = table(ws, "dis", "ratings").group_by(key).agg(pl.col("score").sort()).sort(key)
    b = table(ws, "ls", "ratings").group_by(key).agg(pl.col("score").sort()).sort(key)
    assert a.equals(b)
    assert table(ws, "ls", "ratings")["annotator_id"].str.ends_with("@example.com").all()


def test_planted_truth_is_consistent_and_learnable(synth_dir, ws):
    truth = [json.loads(line) for line in (synth_dir / "truth" / "responses.jsonl").open()]
    annotators = [json.loads(line) for line in (synth_dir / "truth" / "annotators.jsonl").open()]
    pairs = [json.loads(line) for line in (synth_dir / "truth" / "pairs.jsonl").open()]
    assert sum(a["spammer"] for a in annotators) == 2 and {a["style"] for a in annotators} == {-1, 0, 1}
    assert any(p["style_pair"] for p in pairs)
    # truth response ids are the ingest ids
    assert run_cli("ingest", synth_dir / "helpsteer2" / "train.jsonl.gz", synth_dir / "helpsteer2" / "validation.jsonl.gz", "--workspace", ws, "--name", "hs2") == 0
    ids = set(table(ws, "hs2", "responses")["response_id"])
    assert {t["response_id"] for t in truth} == ids
    # aggregated labels track the planted attributes (noise, bias and spammers aside)
    r = table(ws, "hs2", "ratings").filter(pl.col("attribute") == "correctness")
    true = {t["response_id"]: t["attributes"]["correctness"] for t in truth}
    x = np.array([true[i] for i in r["response_id"]])
    assert np.corrcoef(x, r["score"].to_numpy())[0, 1] > 0.8
    # no prompt in both splits
    resp = table(ws, "hs2", "responses")
    assert resp.group_by("prompt_id").agg(pl.col("split").n_unique().alias("n"))["n"].max() == 1
    assert manifest(ws, "hs2")["sources"][0]["quarantined"] == 0


def test_long_answers_divide_annotators_whatever_they_are_compared_with(synth_dir):
    """The style camps judge long answers only, so disagreement is a property of the response: the
    spread of a long answer's helpfulness ratings is much larger than the others' (what a
    mean-variance model's sigma can learn), and pairs with exactly one long answer diverge more
    often than pairs with two."""
    truth = [json.loads(x) for x in (synth_dir / "truth" / "responses.jsonl").open()]
    verbosity = {t["response"]: t["verbosity"] for t in truth}  # the same text has the same verbosity
    rows = _read_gz(synth_dir / "helpsteer2" / "disagreements" / "disagreements.jsonl.gz")
    long = np.array([verbosity[r["response"]] >= 3 for r in rows])
    spread = np.array([np.var(r["helpfulness"], ddof=1) for r in rows])
    assert spread[long].mean() > 2 * spread[~long].mean()
    by_id = {t["response_id"]: t for t in truth}
    pairs = [json.loads(x) for x in (synth_dir / "truth" / "pairs.jsonl").open()]
    n_long = np.array([sum(by_id[p[k]]["verbosity"] >= 3 for k in ("response_a_id", "response_b_id")) for p in pairs])
    div = np.array([min(p["votes"].values()) < 0 < max(p["votes"].values()) for p in pairs])
    assert div[n_long == 1].mean() > div[n_long == 2].mean() + 0.1


def test_scales_without_blowing_up(tmp_path):
    files = write_synthetic(SynthConfig(seed=1, n_prompts=2000), tmp_path, only="helpsteer2-disagreements")
    rows = _read_gz(files["helpsteer2-disagreements"])
    n_ratings = sum(len(r["helpfulness"]) * 5 for r in rows)
    assert len(rows) == 4000 and 4000 * 15 <= n_ratings <= 4000 * 25
