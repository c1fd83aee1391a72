"""helpsteer/labels.py: the one item-label rule (source label > analysis label > vote mean), and
that regression training, regression evaluation and rating-derived principles all read it."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from conftest import run_cli, write_jsonl

from helpsteer import labels
from helpsteer.labels import item_labels


@pytest.fixture(scope="module")
def votes_ws(tmp_path_factory):
    """Per-annotator ratings only (HelpSteer2 disagreements layout): three items with 3 votes, one
    with 2 (the HelpSteer2 procedure leaves it unlabelled), one with an outlier vote."""
    root = tmp_path_factory.mktemp("labels")
    rows = [
        {"prompt": "p1", "response": "r1", "helpfulness": [4, 4, 3], "correctness": [2, 2, 2], "coherence": [4, 4, 4], "complexity": [1, 1, 1], "verbosity": [1, 2, 1]},
        {"prompt": "p2", "response": "r2", "helpfulness": [0, 3, 3, 4], "correctness": [3, 3, 3, 3], "coherence": [3, 3, 3, 3], "complexity": [2, 2, 2, 2], "verbosity": [2, 2, 2, 2]},
        {"prompt": "p3", "response": "r3", "helpfulness": [1, 2], "correctness": [1, 1], "coherence": [2, 2], "complexity": [0, 0], "verbosity": [0, 0]},
        {"prompt": "p4", "response": "r4", "helpfulness": [2, 2, 1], "correctness": [4, 3, 3], "coherence": [4, 4, 3], "complexity": [1, 2, 2], "verbosity": [3, 3, 3]},
    ]
    f = write_jsonl(root / "disagreements.jsonl", rows)
    ws = root / "ws"
    assert run_cli("ingest", f, "--workspace", ws, "--name", "votes", "--format", "helpsteer2-disagreements") == 0
    return ws


def _helpfulness(ws, name):
    lab = item_labels(ws, name, ["helpfulness"])
    resp = pl.read_parquet(ws / "datasets" / name / "responses.parquet").select("response_id", "response")
    return dict(lab.join(resp, on="response_id").select("response", "label").iter_rows())


def test_vote_mean_without_analysis_then_the_analysis_label(votes_ws):
    assert _helpfulness(votes_ws, "votes") == pytest.approx({"r1": 11 / 3, "r2": 2.5, "r3": 1.5, "r4": 5 / 3})
    assert run_cli("analyze", "--workspace", votes_ws, "--name", "votes") == 0
    # HelpSteer2: r2's 0 is more than 2 from the median and dropped, then the mean of the 3 closest;
    # r3 has 2 annotators (fewer than 3) and no label at all
    assert _helpfulness(votes_ws, "votes") == pytest.approx({"r1": 11 / 3, "r2": 10 / 3, "r4": 5 / 3})
    items = pl.read_parquet(votes_ws / "datasets" / "votes" / "analysis" / "items.parquet")
    assert items["helpfulness_label"].null_count() == 1


def test_the_source_label_wins(tmp_path):
    rows = [{"prompt": "p", "response": "r", "helpfulness": 1, "correctness": 2, "coherence": 3, "complexity": 0, "verbosity": 4}]
    ws = tmp_path / "ws"
    assert run_cli("ingest", write_jsonl(tmp_path / "train.jsonl", rows), "--workspace", ws, "--name", "given", "--format", "helpsteer2") == 0
    lab = item_labels(ws, "given")
    assert dict(lab.select("attribute", "label").iter_rows()) == {"helpfulness": 1, "correctness": 2, "coherence": 3, "complexity": 0, "verbosity": 4}


def test_training_and_evaluation_use_the_same_targets(votes_ws, tmp_path):
    from rm_training.data import load_rated
    from rm_training.tokenizer import train_bpe

    assert run_cli("analyze", "--workspace", votes_ws, "--name", "votes") == 0
    attrs = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
    want = {(r, a): y for r, a, y in item_labels(votes_ws, "votes", attrs).iter_rows()}
    rated = load_rated(votes_ws, "votes", train_bpe(["r1 r2 r3 r4 p1 p2"] * 5, vocab_size=280), None, attributes=attrs)
    got = {(rid, a): t for rid, ts in zip(rated.response_id, rated.targets) for a, t in zip(attrs, ts) if not np.isnan(t)}
    assert got == pytest.approx(want)
    assert run_cli("train", "--workspace", votes_ws, "--name", "votes", "--objective", "regression", "--backbone", "tiny", "--max_steps", "2",
                   "--out", "reg") == 0
    out = tmp_path / "eval.json"
    assert run_cli("eval", "--model", votes_ws / "runs" / "reg", "--workspace", votes_ws, "--name", "votes", "--out", out) == 0
    detail = pl.read_parquet(tmp_path / "eval_responses.parquet")
    assert {(r, a): y for r, a, y in detail.select("response_id", "attribute", "label").iter_rows()} == pytest.approx(want)
    assert json.loads(out.read_text())["regression"]["helpfulness"]["n"] == 3


def test_an_item_the_analysis_has_not_seen_falls_back_to_its_vote_mean(votes_ws, tmp_path):
    """(`ingest --append` removes a dataset's analysis; an items.parquet written by an older
    version, or edited, may still lack a response.)"""
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(votes_ws, ws)
    assert run_cli("analyze", "--workspace", ws, "--name", "votes") == 0
    items = ws / "datasets" / "votes" / "analysis" / "items.parquet"
    resp = pl.read_parquet(ws / "datasets" / "votes" / "responses.parquet")
    r2 = resp.filter(pl.col("response") == "r2")["response_id"][0]
    pl.read_parquet(items).filter(pl.col("response_id") != r2).write_parquet(items)
    got = _helpfulness(ws, "votes")
    assert got["r2"] == pytest.approx(2.5) and got["r1"] == pytest.approx(11 / 3) and "r3" not in got  # (the analysis gave r2 10/3)  # r3: seen by the analysis, left unlabelled


def test_pair_labels_source_strength_else_vote_mean(monkeypatch):
    """p1 has a source strength (-2) and votes: the source's wins; p2 only votes (-3, 1, 1): mean
    -1/3 over 3 votes; p3 nothing usable: null strength, 0 votes."""
    prefs = pl.DataFrame({
        "pair_id": ["p1", "p1", "p1", "p2", "p2", "p2", "p3"],
        "prompt_id": ["q1"] * 3 + ["q2"] * 3 + ["q3"],
        "response_a_id": ["a1"] * 3 + ["a2"] * 3 + ["a3"], "response_b_id": ["b1"] * 3 + ["b2"] * 3 + ["b3"],
        "annotator_id": [None, "u1", "u2", "u1", "u2", "u3", None],
        "strength": [-2.0, 3.0, 1.0, -3.0, 1.0, 1.0, None], "subset": ["s"] * 7})
    monkeypatch.setattr(labels.store, "load_table", lambda ws, name, table, *a: prefs)
    out = labels.pair_labels(None, "x")
    assert out["pair_id"].to_list() == ["p1", "p2", "p3"]
    assert out["strength"].to_list()[:2] == pytest.approx([-2.0, -1 / 3])
    assert out["strength"][2] is None
    assert out["n_votes"].to_list() == [2, 3, 0]
    assert out.columns == ["pair_id", "prompt_id", "response_a_id", "response_b_id", "subset", "n_votes", "strength"]


@pytest.mark.parametrize("v, want", [(True, 1.0), (False, 0.0), (1, 1.0), (0, 0.0), (0.0, 0.0), (" Yes ", 1.0), ("NO", 0.0),
                                     ("y", 1.0), ("n", 0.0), ("true", 1.0), ("false", 0.0), ("1", 1.0), ("0", 0.0),
                                     ("maybe", None), (2, None), (0.5, None), (None, None), ([1], None)])
def test_yes_no(v, want):
    assert labels.yes_no(v) == want


def test_feedback_statements():
    text = "The response is mostly helpful. The response is partially correct. The response is NOT concise, and the response is very clear."
    assert labels.feedback_statements(text) == [("The response is helpful.", 1.0), ("The response is concise.", 0.0),
                                                ("The response is clear.", 1.0)]
    assert labels.feedback_statements(None) == []
