"""`helpsteer analyze`: planted annotators are found, outputs follow the contract, and real data
(PandaLM, LLMFAO) match an independent computation from the raw files."""

from __future__ import annotations

import csv
import json
from collections import defaultdict

import krippendorff
import numpy as np
import polars as pl
from conftest import run_cli, shared, write_jsonl
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa

from helpsteer.aggregation import RatingAggregator
from helpsteer.disagreement import pairs_from_ratings, text_cues


def analysis(ws, name, f):
    return ws / "datasets" / name / "analysis" / f


def agreement(ws, name):
    return json.loads(analysis(ws, name, "agreement.json").read_text())


def _check_stat(s):
    assert set(s) in ({"value", "ci_low", "ci_high"}, {"value", "reason"}), s
    if s["value"] is None:
        assert s["reason"]
    elif s["ci_low"] is not None:
        assert s["ci_low"] <= s["value"] <= s["ci_high"]


def test_spammers_rank_worst_on_synthetic_ratings(synth_dir, ws):
    assert run_cli("ingest", synth_dir / "label_studio" / "ratings_export.json", "--workspace", ws, "--name", "ls") == 0
    assert run_cli("analyze", "--workspace", ws, "--name", "ls", "--bootstrap", "200") == 0
    truth = [json.loads(line) for line in (synth_dir / "truth" / "annotators.jsonl").open()]
    spammers = {a["annotator"] for a in truth if a["spammer"]}
    table = pl.read_parquet(analysis(ws, "ls", "annotators.parquet"))
    assert set(table.head(len(spammers))["annotator_id"]) == spammers
    assert set(table.filter(pl.col("flagged"))["annotator_id"]) == spammers
    assert table.filter(~pl.col("flagged"))["agreement"].min() > 0.5
    assert set(table.columns) >= {"annotator_id", "n_items", "offset", "agreement", "flagged"}
    # offsets follow the planted biases (non-spammers)
    bias = {a["annotator"]: a["bias"] for a in truth if not a["spammer"]}
    t = table.filter(pl.col("annotator_id").is_in(list(bias)))
    assert np.corrcoef(t["offset"].to_numpy(), [bias[a] for a in t["annotator_id"]])[0, 1] > 0.7
    res = agreement(ws, "ls")
    for attr, r in res["ratings"].items():
        assert isinstance(r["n_items"], int) and isinstance(r["n_annotators"], int) and r["n_annotators"] == 24
        for k in ("kappa_quadratic", "alpha_interval", "alpha_ordinal"):
            _check_stat(r[k])
            assert 0 < r[k]["value"] < 1
    items = pl.read_parquet(analysis(ws, "ls", "items.parquet"))
    assert {"helpfulness_mean", "helpfulness_spread", "helpfulness_label"} <= set(items.columns)
    assert items.height == pl.read_parquet(ws / "datasets" / "ls" / "responses.parquet").height


def test_style_pairs_are_recovered_as_diverging(synth_dir, ws):
    assert run_cli("ingest", synth_dir / "helpsteer2" / "preference" / "preference.jsonl.gz", "--workspace", ws, "--name", "pref") == 0
    assert run_cli("analyze", "--workspace", ws, "--name", "pref", "--bootstrap", "100") == 0
    pairs = pl.read_parquet(analysis(ws, "pref", "pairs.parquet"))
    rows = [json.loads(line) for line in (synth_dir / "truth" / "pairs.jsonl").open()]
    truth = pl.DataFrame([{k: r[k] for k in ("response_a_id", "response_b_id", "style_pair")} for r in rows])
    voters = {(r["response_a_id"], r["response_b_id"]): set(r["votes"]) for r in rows}
    styles = {a["annotator"]: a["style"] for a in map(json.loads, (synth_dir / "truth" / "annotators.jsonl").open())}
    j = pairs.join(truth, on=["response_a_id", "response_b_id"])
    assert j.height == truth.height
    both_camps = [sp and {styles[e] for e in voters[(a, b)]} >= {1, -1} for sp, a, b in zip(j["style_pair"], j["response_a_id"], j["response_b_id"])]
    recovered = j.filter(pl.Series(both_camps))["diverging"].mean()
    assert recovered >= 0.85  # 0.95 expected (a long-lover prefers the long answer by 1 point, so a few vote a tie)
    style_rate = j.filter(pl.col("style_pair"))["diverging"].mean()
    other_rate = j.filter(~pl.col("style_pair"))["diverging"].mean()
    assert style_rate > 1.8 * other_rate
    assert j.filter(pl.col("style_pair"))["cues"].list.contains("length_difference").mean() > 0.95
    res = agreement(ws, "pref")
    p = res["preferences"]
    assert p["n_pairs"] == p["n_annotated_pairs"] == truth.height
    for k in ("diverging_rate", "unanimous_rate", "alpha_interval"):
        _check_stat(p[k])
    assert abs(p["diverging_rate"]["value"] - pairs["diverging"].mean()) < 1e-12
    # anonymous votes: alpha yes, kappa and annotator table no, with reasons
    assert p["kappa_quadratic"]["value"] is None and "anonymous" in p["kappa_quadratic"]["reason"]
    assert res["annotators"]["available"] is False and "anonymous" in res["annotators"]["reason"]
    assert pl.read_parquet(analysis(ws, "pref", "annotators.parquet")).height == 0


def test_pandalm_against_independent_computation(ws):
    path = shared("pandalm-testset", "data", "testset-v1.json")
    assert run_cli("ingest", path, "--workspace", ws, "--name", "panda") == 0
    assert run_cli("analyze", "--workspace", ws, "--name", "panda", "--bootstrap", "200") == 0
    raw = [r for r in json.loads(path.read_text()) if isinstance(r["response1"], str) and isinstance(r["response2"], str) and r["response1"] != r["response2"]]
    to_s = {1: -1.0, 2: 1.0, 0: 0.0}
    votes = np.array([[to_s[r[f"annotator{k}"]] for k in (1, 2, 3)] for r in raw])
    diverging = ((votes < 0).any(1) & (votes > 0).any(1)).mean()
    unanimous = ((votes < 0).all(1) | (votes > 0).all(1)).mean()
    p = agreement(ws, "panda")["preferences"]
    assert p["n_annotated_pairs"] == len(raw)
    assert abs(p["diverging_rate"]["value"] - diverging) < 1e-12
    assert abs(p["unanimous_rate"]["value"] - unanimous) < 1e-12
    assert abs(p["alpha_interval"]["value"] - krippendorff.alpha(reliability_data=votes.T, level_of_measurement="interval")) < 1e-9
    kap = np.mean([cohen_kappa_score(votes[:, i], votes[:, j], labels=[-1.0, 0.0, 1.0], weights="quadratic") for i, j in ((0, 1), (0, 2), (1, 2))])
    assert abs(p["kappa_quadratic"]["value"] - kap) < 1e-9
    counts = np.stack([(votes == v).sum(1) for v in (-1.0, 0.0, 1.0)], axis=1)
    assert abs(p["fleiss_kappa"]["value"] - fleiss_kappa(counts)) < 1e-9
    pairs = pl.read_parquet(analysis(ws, "panda", "pairs.parquet")).sort("pair_id")
    soft = {f"pandalm:{r['idx']}": ((v < 0).sum() + 0.5 * (v == 0).sum()) / 3 for r, v in zip(raw, votes)}
    assert all(abs(s - soft[pid]) < 1e-12 for pid, s in zip(pairs["pair_id"], pairs["soft_label"]))
    ann = pl.read_parquet(analysis(ws, "panda", "annotators.parquet"))
    assert sorted(ann["annotator_id"]) == ["annotator1", "annotator2", "annotator3"] and not ann["flagged"].any()


def test_llmfao_against_independent_computation(ws):
    pairs_file = shared("llmfao-crowd", "pairs-crowd.jsonl")
    votes_file = shared("llmfao-crowd", "crowd-comparisons.csv")
    assert run_cli("ingest", pairs_file, votes_file, "--workspace", ws, "--name", "fao") == 0
    assert run_cli("analyze", "--workspace", ws, "--name", "fao", "--bootstrap", "200") == 0
    by_pair = defaultdict(list)
    for r in csv.DictReader(votes_file.open(encoding="utf-8")):
        by_pair[r["id"]].append({"left": -1.0, "right": 1.0, "tie": 0.0}[r["winner"]])
    multi = {k: np.array(v) for k, v in by_pair.items() if len(v) >= 2}
    diverging = np.mean([(v < 0).any() and (v > 0).any() for v in multi.values()])
    unanimous = np.mean([(v < 0).all() or (v > 0).all() for v in multi.values()])
    p = agreement(ws, "fao")["preferences"]
    assert p["n_pairs"] == 2139 and p["n_annotated_pairs"] == len(multi)
    assert abs(p["diverging_rate"]["value"] - diverging) < 1e-12
    assert abs(p["unanimous_rate"]["value"] - unanimous) < 1e-12
    vc = np.array([[(np.array(v) == s).sum() for s in (-1.0, 0.0, 1.0)] for v in by_pair.values()])
    assert abs(p["alpha_interval"]["value"] - krippendorff.alpha(value_counts=vc, value_domain=[-1.0, 0.0, 1.0], level_of_measurement="interval")) < 1e-9
    _check_stat(p["kappa_quadratic"])
    assert p["fleiss_kappa"]["value"] is None  # 1-5 votes per pair
    ann = pl.read_parquet(analysis(ws, "fao", "annotators.parquet"))
    assert ann.height == 124 and ann["kind"][0] == "preferences"


def test_helpsteer2_aggregation_by_hand():
    rows = [("r1", f"a{k}", "helpfulness", float(v)) for k, v in enumerate([0, 4, 4, 3, 4])]
    rows += [("r2", f"a{k}", "helpfulness", float(v)) for k, v in enumerate([1, 2])]
    rows += [("r3", None, "helpfulness", 3.0)]
    ratings = pl.DataFrame(rows, schema=["response_id", "annotator_id", "attribute", "score"], orient="row")
    agg = RatingAggregator().fit(ratings)
    lab = {r["response_id"]: r for r in agg.labels_.iter_rows(named=True)}
    assert lab["r1"]["label"] == 4.0  # 0 is > 2 from the median 4; most-agreeing 3 of [3, 4, 4, 4] = 4, 4, 4
    assert lab["r1"]["spread"] == 4.0 and lab["r1"]["mean"] == 3.0
    assert lab["r2"]["label"] is None  # fewer than 3 annotators
    assert lab["r3"]["label"] == 3.0  # the source's own aggregated label
    assert agg.report_["removed_items_few_annotators"] == 1 and agg.report_["removed_annotations_few_annotators"] == 2
    assert agg.report_["removed_annotations_outliers"] == 1
    assert RatingAggregator(method="median").fit(ratings).labels_.filter(pl.col("response_id") == "r2")["label"][0] == 1.5
    assert RatingAggregator(k=3, max_distance=10, rounding="nearest").fit(ratings.filter(pl.col("response_id") == "r1")).labels_["label"][0] == 4.0


def test_ratings_to_pairs_and_cues():
    labels = pl.DataFrame({"response_id": ["a", "b", "c"], "attribute": ["helpfulness"] * 3, "label": [4.0, 1.0, 4.0], "spread": [0.0, 2.0, 1.0]})
    responses = pl.DataFrame({"response_id": ["a", "b", "c"], "prompt_id": ["p", "p", "p"]})
    pairs = pairs_from_ratings(labels, responses).sort("response_a_id", "response_b_id")
    assert pairs.select("response_a_id", "response_b_id", "strength", "margin", "spread").rows() == [("a", "b", -3.0, 3.0, 2.0), ("a", "c", 0.0, 0.0, 1.0), ("b", "c", 3.0, 3.0, 2.0)]
    assert text_cues("Sure, here it is.", "I'm sorry, but I cannot help with that.", 1) == ["refusal"]
    assert "formatting" in text_cues("# Title\n- a\n- b", "plain text answer here", 1)
    assert "length_difference" in text_cues("short", "a much longer answer " * 10, 3)
    assert "multi_turn" in text_cues("x", "y", 3)
    assert "near_duplicate" in text_cues("the cat sat on the mat today", "the cat sat on the mat today!", 1)


def test_analyze_cli_errors_and_aggregated_only(ws, tmp_path, capsys):
    assert run_cli("analyze", "--workspace", ws, "--name", "nope") == 2
    f = write_jsonl(tmp_path / "train.jsonl", [{"prompt": "q", "response": f"r{i}", "helpfulness": i % 5, "correctness": 1, "coherence": 1, "complexity": 1, "verbosity": 1} for i in range(4)])
    assert run_cli("ingest", f, "--workspace", ws, "--name", "agg") == 0
    assert run_cli("analyze", "--workspace", ws, "--name", "agg", "--bootstrap", "10") == 0
    res = agreement(ws, "agg")
    assert res["ratings"] == {} and "aggregated" in res["ratings_note"]
    assert res["preferences"]["n_pairs"] == 0 and res["preferences"]["diverging_rate"]["value"] is None
    assert res["derived_pairs"]["n_pairs"] == 6  # 4 responses to one prompt
    assert pl.read_parquet(analysis(ws, "agg", "items.parquet"))["helpfulness_label"].to_list() is not None
    assert run_cli("analyze", "--workspace", ws, "--name", "agg", "--aggregation", "bogus") == 2
