"""The real files in ../shared/data round-trip with counts checked against an independent reading
of the raw files (plain json/csv, no project code)."""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter

import polars as pl
from conftest import manifest, quarantine, run_cli, shared, table


def test_hh_rlhf_harmless_test(ws):
    path = shared("hh-rlhf-harmless-test", "harmless-base", "test.jsonl.gz")
    raw = [json.loads(line) for line in gzip.open(path, "rt", encoding="utf-8")]
    assert run_cli("ingest", path, "--workspace", ws, "--name", "hh") == 0
    m = manifest(ws, "hh")
    src = m["sources"][0]
    assert src["format"] == "hh-rlhf" and src["records"] == len(raw) == 2312
    assert src["ingested"] + src["quarantined"] == src["records"]
    # independent expectations: identical pairs and exact duplicate lines are the only rejects
    seen, dup, same = set(), 0, 0
    for r in raw:
        key = json.dumps(r, sort_keys=True)
        dup += key in seen
        seen.add(key)
        same += r["chosen"] == r["rejected"]
    assert src["quarantined"] == dup + same
    prefs = table(ws, "hh", "preferences")
    assert prefs.height == src["ingested"] and set(prefs["strength"]) == {-1.0}
    # 5 pairs do not share their context; 4 end in an empty assistant turn (anchors.md)
    assert prefs.filter(pl.col("flags").list.contains("context_mismatch")).height == 5
    resp = table(ws, "hh", "responses")
    assert resp.filter(pl.col("flags").list.contains("empty_response")).height == 4
    # the split of a shipped test file is `test`
    assert set(resp["split"]) == {"test"}


def test_pandalm_testset(ws):
    path = shared("pandalm-testset", "data", "testset-v1.json")
    raw = json.loads(path.read_text())
    assert run_cli("ingest", path, "--workspace", ws, "--name", "panda") == 0
    bad_type = [r["idx"] for r in raw if not (isinstance(r["response1"], str) and isinstance(r["response2"], str))]
    same = [r["idx"] for r in raw if isinstance(r["response1"], str) and r["response1"] == r["response2"]]
    src = manifest(ws, "panda")["sources"][0]
    assert src["records"] == 999 and src["quarantined"] == len(bad_type) + len(same) and len(bad_type) > 0
    q = quarantine(ws, "panda")
    assert sorted(r["record"]["idx"] for r in q) == sorted(bad_type + same)
    assert all("expected a string, got boolean" in r["reason"] for r in q if r["record"]["idx"] in bad_type)
    prefs = table(ws, "panda", "preferences")
    kept = [r for r in raw if r["idx"] not in set(bad_type + same)]
    assert prefs["pair_id"].n_unique() == len(kept)  # content-identical items stay separate pairs
    for k in (1, 2, 3):
        got = Counter(prefs.filter(pl.col("annotator_id") == f"annotator{k}")["strength"].to_list())
        want = Counter({1: -1.0, 2: 1.0, 0: 0.0}[r[f"annotator{k}"]] for r in kept)
        assert got == want


def test_llmfao_crowd(ws):
    pairs = shared("llmfao-crowd", "pairs-crowd.jsonl")
    votes = shared("llmfao-crowd", "crowd-comparisons.csv")
    assert run_cli("ingest", pairs, votes, "--workspace", ws, "--name", "fao") == 0
    raw_votes = list(csv.DictReader(votes.open(encoding="utf-8")))
    raw_pairs = [json.loads(line) for line in pairs.open(encoding="utf-8")]
    m = manifest(ws, "fao")
    by_fmt = {s["format"]: s for s in m["sources"]}
    assert by_fmt["llmfao-pairs"]["records"] == len(raw_pairs) == 2139
    assert by_fmt["llmfao-votes"]["records"] == len(raw_votes) == 8931
    assert all(s["ingested"] + s["quarantined"] == s["records"] for s in m["sources"])
    prefs = table(ws, "fao", "preferences")
    assert prefs.height == 8931 and prefs["annotator_id"].n_unique() == 124
    assert Counter(prefs["strength"].to_list()) == Counter({-1.0: 2911, 1.0: 2549, 0.0: 3471})
    # empty responses are kept and flagged: 289 pairs with 1,208 votes
    empty_pairs = {str(p["id"]) for p in raw_pairs if not p["result_x"].strip() or not p["result_y"].strip()}
    assert len(empty_pairs) == 289
    assert sum(v["id"] in empty_pairs for v in raw_votes) == 1208
    resp = table(ws, "fao", "responses")
    empty_ids = set(resp.filter(pl.col("flags").list.contains("empty_response"))["response_id"])
    on_empty = prefs.filter(pl.col("response_a_id").is_in(list(empty_ids)) | pl.col("response_b_id").is_in(list(empty_ids)))
    assert on_empty["pair_id"].n_unique() == 289 and on_empty.height == 1208


def test_llmfao_drop_empty_quarantines_those_pairs(ws):
    pairs = shared("llmfao-crowd", "pairs-crowd.jsonl")
    votes = shared("llmfao-crowd", "crowd-comparisons.csv")
    assert run_cli("ingest", pairs, votes, "--workspace", ws, "--name", "fao", "--drop-empty") == 0
    m = manifest(ws, "fao")
    by_fmt = {s["format"]: s for s in m["sources"]}
    assert by_fmt["llmfao-pairs"]["quarantined"] == 289
    assert by_fmt["llmfao-votes"]["quarantined"] == 1208  # their votes reference pairs that are gone
    assert table(ws, "fao", "preferences").height == 8931 - 1208
