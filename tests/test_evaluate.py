"""rm_training/evaluate.py: calibration that does not depend on which response a source puts
first, one evaluation file per dataset (with its name and hash) plus eval.json for the latest, and
statistics that cannot exist reported as n/a with a reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli, shared, write_jsonl
from rm_training.evaluate import calibration


def test_calibration_of_an_uninformative_model_on_gold_pairs():
    """Gold data often stores the chosen response as A: y = 1 everywhere. Oriented as stored, an
    uninformative p = 0.5 gets ECE 0.5 (= 1 - mean p); on both orientations it is calibrated."""
    p, y = np.full(200, 0.5), np.ones(200)
    assert calibration(p, y)["ece"] == pytest.approx(0.5)
    both = calibration(p, y, both_orientations=True)
    assert both["ece"] == pytest.approx(0.0) and both["brier"] == pytest.approx(0.25) and both["orientation"].startswith("both")
    # a confident, always-right model stays perfect either way; a hand computation for a mixed case
    assert calibration(np.full(10, 1.0), np.ones(10), both_orientations=True)["ece"] == pytest.approx(0.0)
    p2, y2 = np.array([0.8, 0.8, 0.3]), np.array([1.0, 0.0, 1.0])
    got = calibration(p2, y2, both_orientations=True)
    # six points: (0.8,1) (0.8,0) (0.3,1) (0.2,0) (0.2,1) (0.7,0); bins [0.2]x2 mean y 0.5, [0.3] y 1, [0.7] y 0, [0.8]x2 y 0.5
    want = (2 * abs(0.2 - 0.5) + abs(0.3 - 1) + abs(0.7 - 0) + 2 * abs(0.8 - 0.5)) / 6
    assert got["ece"] == pytest.approx(want)
    assert got["brier"] == pytest.approx(np.mean((np.r_[p2, 1 - p2] - np.r_[y2, 1 - y2]) ** 2))


@pytest.fixture(scope="module")
def run_ws(tmp_path_factory):
    from helpsteer.synth import SynthConfig, write_synthetic

    root = tmp_path_factory.mktemp("ev")
    write_synthetic(SynthConfig(seed=6, n_prompts=60), root / "syn")
    ws = root / "ws"
    assert run_cli("ingest", root / "syn" / "helpsteer2" / "preference" / "preference.jsonl.gz", "--workspace", ws, "--name", "pref") == 0
    assert run_cli("train", "--workspace", ws, "--name", "pref", "--objective", "bt", "--backbone", "tiny", "--max_steps", "3", "--max_length", "64",
                   "--save_strategy", "no", "--out", "bt") == 0
    return ws


def test_one_evaluation_per_dataset_and_eval_json_is_the_latest(run_ws, tmp_path):
    run = run_ws / "runs" / "bt"
    gold = write_jsonl(tmp_path / "Natural" / "dataset.jsonl", [
        {"prompt": f"question {i}", "chosen": f"a right answer {i}", "rejected": f"wrong {i}"} for i in range(12)])
    assert run_cli("eval", "--model", run, "--workspace", run_ws, "--name", "pref") == 0
    assert run_cli("eval", "--model", run, "--data", gold, "--format", "pairs") == 0
    first = json.loads((run / "eval" / "pref.json").read_text())
    second = json.loads((run / "eval" / "Natural-dataset.json").read_text())
    latest = json.loads((run / "eval.json").read_text())
    from helpsteer.containers import file_sha256
    from rm_training.evaluate import dataset_hash

    assert first["dataset"] == "pref" and first["dataset_sha256"] == dataset_hash(run_ws, "pref") and first["n_pairs"] > 0
    assert second["dataset"] == "Natural-dataset" and second["dataset_sha256"] == file_sha256(gold) and second["n_pairs"] == 12
    assert latest["evaluation_file"] == "eval/Natural-dataset.json" and latest["accuracy"] == second["accuracy"]
    assert (run / "eval" / "pref_pairs.parquet").exists() and (run / "eval" / "Natural-dataset_pairs.parquet").exists()
    # gold pairs (A always chosen): calibration on both orientations, and it says so
    assert second["calibration"]["orientation"].startswith("both")


def test_strong_diverging_rate_is_na_when_votes_give_only_a_direction(tmp_path):
    path = shared("pandalm-testset", "data", "testset-v1.json")
    ws = tmp_path / "ws"
    assert run_cli("ingest", path, "--workspace", ws, "--name", "pandalm") == 0
    assert run_cli("analyze", "--workspace", ws, "--name", "pandalm") == 0
    prefs = json.loads((ws / "datasets" / "pandalm" / "analysis" / "agreement.json").read_text())["preferences"]
    strong = prefs["diverging_rate_strong"]
    assert strong["value"] is None
    assert strong["reason"] == "needs votes with |strength| >= 2; this dataset's votes reach only 1 (direction only)"
    assert prefs["diverging_rate"]["value"] is not None  # the plain rate exists
