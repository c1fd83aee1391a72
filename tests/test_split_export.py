"""`helpsteer split` (by prompt, no leakage) and `helpsteer export` (TRL, DPO, datasets)."""

from __future__ import annotations

import json

import datasets
import polars as pl
from conftest import manifest, run_cli, shared, table, write_jsonl


def test_split_hh_rlhf_by_prompt_without_leakage(ws):
    path = shared("hh-rlhf-harmless-test", "harmless-base", "test.jsonl.gz")
    assert run_cli("ingest", path, "--workspace", ws, "--name", "hh") == 0
    assert run_cli("split", "--workspace", ws, "--name", "hh", "--eval-fraction", "0.2", "--seed", "1") == 0
    resp = table(ws, "hh", "responses")
    assert set(resp["split"]) == {"train", "validation"}
    assert resp.group_by("prompt_id").agg(pl.col("split").n_unique().alias("n"))["n"].max() == 1
    prefs = table(ws, "hh", "preferences")
    split_of = dict(zip(resp["response_id"], resp["split"]))
    assert all(split_of[a] == split_of[b] for a, b in zip(prefs["response_a_id"], prefs["response_b_id"]))  # context_mismatch pairs too
    share = resp.filter(pl.col("split") == "validation")["prompt_id"].n_unique() / resp["prompt_id"].n_unique()
    assert 0.15 < share < 0.25
    m = manifest(ws, "hh")
    assert m["splits"]["train"] + m["splits"]["validation"] == resp.height
    before = resp["split"].to_list()
    assert run_cli("split", "--workspace", ws, "--name", "hh", "--eval-fraction", "0.2", "--seed", "1") == 0
    assert table(ws, "hh", "responses")["split"].to_list() == before  # deterministic


def test_split_rejects_bad_fraction(ws, tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c"}])
    assert run_cli("ingest", f, "--workspace", ws, "--name", "p") == 0
    assert run_cli("split", "--workspace", ws, "--name", "p", "--eval-fraction", "1.5") == 2
    assert run_cli("split", "--workspace", ws, "--name", "missing") == 2


def _pref_dataset(ws, tmp_path):
    rows = [
        {"split": "train", "prompt": "P1", "response_1": "good", "response_2": "bad", "preference_strength": -2, "preference_statement": "",
         "preference_elaboration": "", "all_preferences_unprocessed": [{"strength": -2, "justification": ""}, {"strength": -1, "justification": ""}]},
        {"split": "train", "prompt": "P2", "response_1": "meh", "response_2": "great", "preference_strength": 3, "preference_statement": "",
         "preference_elaboration": "", "all_preferences_unprocessed": [{"strength": 3, "justification": ""}]},
        {"split": "validation", "prompt": "P3", "response_1": "x", "response_2": "y", "preference_strength": 0, "preference_statement": "",
         "preference_elaboration": "", "all_preferences_unprocessed": [{"strength": 1, "justification": ""}, {"strength": -1, "justification": ""}]},
    ]
    f = write_jsonl(tmp_path / "preference.jsonl", rows)
    assert run_cli("ingest", f, "--workspace", ws, "--name", "pref") == 0


def test_export_trl_columns_and_margin(ws, tmp_path):
    _pref_dataset(ws, tmp_path)
    out = tmp_path / "out" / "pairs.jsonl"
    assert run_cli("export", "--workspace", ws, "--name", "pref", "--format", "trl", "--out", out) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["prompt"], r["chosen"], r["rejected"], r["margin"]) for r in rows] == [("P1", "good", "bad", 2.0), ("P2", "great", "meh", 3.0)]  # tie dropped
    assert run_cli("export", "--workspace", ws, "--name", "pref", "--format", "trl", "--out", out, "--ties", "keep") == 0
    assert len(out.read_text().splitlines()) == 3


def test_export_dpo_and_hf(ws, tmp_path):
    _pref_dataset(ws, tmp_path)
    out = tmp_path / "dpo.jsonl"
    assert run_cli("export", "--workspace", ws, "--name", "pref", "--format", "dpo", "--out", out) == 0
    r = json.loads(out.read_text().splitlines()[0])
    assert r["prompt"] == [{"role": "user", "content": "P1"}] and r["chosen"] == [{"role": "assistant", "content": "good"}]
    hf = tmp_path / "hf"
    assert run_cli("export", "--workspace", ws, "--name", "pref", "--format", "hf", "--out", hf) == 0
    dd = datasets.load_from_disk(str(hf))
    assert set(dd.keys()) == {"train"} and dd["train"].num_rows == 2
    assert {"prompt", "chosen", "rejected", "margin"} <= set(dd["train"].column_names)
    # an exported hf folder ingests back as TRL pairs
    assert run_cli("ingest", hf, "--workspace", ws, "--name", "back", "--format", "pairs") == 0
    assert table(ws, "back", "preferences").height == 2


def test_export_without_pairs_is_exit_2(ws, tmp_path):
    f = write_jsonl(tmp_path / "train.jsonl", [{"prompt": "q", "response": "r", "helpfulness": 1, "correctness": 1, "coherence": 1, "complexity": 1, "verbosity": 1}])
    assert run_cli("ingest", f, "--workspace", ws, "--name", "r") == 0
    assert run_cli("export", "--workspace", ws, "--name", "r", "--format", "trl", "--out", tmp_path / "x.jsonl") == 2
