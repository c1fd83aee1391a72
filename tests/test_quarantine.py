"""Validation and quarantine: every bad record is quarantined with source, line and reason, nothing
is lost (`records == ingested + quarantined`), --strict fails on the first one, writes are atomic,
and fuzzed input never crashes ingest."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import ROOT, ingest_accounts_for_all, manifest, quarantine, run_cli, table, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpsteer import containers
from helpsteer.containers import SourceState, iter_chunks
from helpsteer.formats import FORMATS, _load_all

GOOD = {"prompt": "q", "response": "r", "helpfulness": 3, "correctness": 3, "coherence": 3, "complexity": 1, "verbosity": 1}


def good(i: int) -> dict:
    return dict(GOOD, prompt=f"q{i}", response=f"r{i}")


def test_structural_problems_each_get_a_reason(ws, tmp_path):
    lines = [json.dumps(good(1)), "{not json", json.dumps(good(2)), "[1, 2]", json.dumps(dict(good(3), response=5)), json.dumps(good(2)), ""]
    path = tmp_path / "train.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"prompt": "q9", "response": "\xff\xfe"}\n')
    assert run_cli("ingest", path, "--workspace", ws, "--name", "d", "--format", "helpsteer2") == 0
    q = {r["line"]: r for r in quarantine(ws, "d")}
    assert set(q) == {2, 4, 5, 6, 8}
    assert q[2]["reason"].startswith("invalid JSON") and q[2]["record"] == "{not json"
    assert "not a JSON object" in q[4]["reason"]
    assert q[5]["reason"] == "field 'response': expected a string, got integer 5"
    assert q[6]["reason"] == "exact duplicate of line 3"
    assert q[8]["reason"].startswith("undecodable bytes")
    assert all(r["source"] == str(path) for r in q.values())
    src = manifest(ws, "d")["sources"][0]
    assert (src["records"], src["ingested"], src["quarantined"]) == (7, 2, 5)  # the blank line is no record
    assert table(ws, "d", "responses").height == 2


def test_truncated_gzip_ingests_what_was_readable(ws, tmp_path):
    rows = [json.dumps(good(i)) for i in range(2000)]
    full = gzip.compress(("\n".join(rows) + "\n").encode())
    path = tmp_path / "train.jsonl.gz"
    path.write_bytes(full[: len(full) * 2 // 3])
    assert run_cli("ingest", path, "--workspace", ws, "--name", "t") == 0
    src = manifest(ws, "t")["sources"][0]
    assert src["truncated"] is True and "ended early" in src["warnings"][0]
    assert 0 < src["ingested"] < 2000 and src["ingested"] + src["quarantined"] == src["records"]
    q = quarantine(ws, "t")
    assert len(q) <= 1 and all("truncated" in r["reason"] or "invalid JSON" in r["reason"] for r in q)
    assert run_cli("ingest", path, "--workspace", ws, "--name", "t2", "--strict") == 2


def test_json_array_with_syntax_error_salvages_elements(ws, tmp_path):
    path = tmp_path / "rows.json"
    path.write_text("[" + json.dumps(good(1)) + ", " + json.dumps(good(2)) + ", {oops}, " + json.dumps(good(3)) + "]")
    assert run_cli("ingest", path, "--workspace", ws, "--name", "a", "--format", "helpsteer2") == 0
    src = manifest(ws, "a")["sources"][0]
    assert (src["records"], src["ingested"], src["quarantined"]) == (3, 2, 1)
    assert "element 3" in quarantine(ws, "a")[0]["reason"]


def test_strict_fails_on_first_bad_record_and_writes_nothing(ws, tmp_path, capsys):
    path = write_jsonl(tmp_path / "train.jsonl", [good(1), dict(good(2), helpfulness=9), good(3)])
    assert run_cli("ingest", path, "--workspace", ws, "--name", "s", "--strict") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and f"{path}:2:" in err and "helpfulness" in err
    assert not (ws / "datasets" / "s").exists()
    assert not list((ws / "datasets").glob(".tmp-*"))


def test_nothing_ingestable_is_exit_2(ws, tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [dict(good(1), helpfulness=-1), dict(good(2), helpfulness=10)])
    assert run_cli("ingest", path, "--workspace", ws, "--name", "n") == 2
    assert not (ws / "datasets" / "n").exists()


def test_unknown_format_names_its_fields_and_a_map_line(ws, tmp_path, capsys):
    path = write_jsonl(tmp_path / "x.jsonl", [{"question": "q", "answer": "a"}])
    assert run_cli("ingest", path, "--workspace", ws, "--name", "x") == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {path}: record fields [question, answer] match no known format. Map them to a shape (pairs, ratings, rankings, criteria; "
        "README \"Ingest\") by editing: --format ratings --map prompt=question,response=answer,ATTRIBUTE=COL"]
    # a format whose identifying fields are mostly there is named, with what it lacks
    path = write_jsonl(tmp_path / "y.jsonl", [{"prompt": "q", "response": "a", "helpfulness": 3, "correctness": 3, "coherence": 3}])
    assert run_cli("ingest", path, "--workspace", ws, "--name", "y") == 2
    assert "Closest: helpsteer2 (lacks complexity, verbosity)." in capsys.readouterr().err


def test_folder_skips_files_no_reader_takes_and_lists_each(ws, tmp_path, capsys):
    folder = tmp_path / "data"
    write_jsonl(folder / "train.jsonl", [good(1), good(2)])
    write_jsonl(folder / "sub" / "notes.jsonl", [{"question": "q", "answer": "a"}])
    (folder / "README.md").write_text("# data\n")
    (folder / "LICENSE").write_text("MIT\n")
    (folder / "make.py").write_text("print(1)\n")
    (folder / ".hidden.jsonl").write_text("not read\n")
    assert run_cli("ingest", folder, "--workspace", ws, "--name", "f") == 0
    err = capsys.readouterr().err.splitlines()
    want = {"LICENSE": "not a data file (no extension)", "README.md": "not a data file (.md)", "make.py": "not a data file (.py)",
            "sub/notes.jsonl": "record fields [question, answer] match no known format. Map them to a shape (pairs, ratings, rankings, criteria; "
                               "README \"Ingest\") by editing: --format ratings --map prompt=question,response=answer,ATTRIBUTE=COL"}
    for name, reason in want.items():
        assert f"skipped {folder / name}: {reason}" in err
    m = manifest(ws, "f")
    assert {s["path"]: s["ingested"] for s in m["sources"]} == {str(folder / "train.jsonl"): 2}
    assert m["skipped"] == [{"path": str(folder / n), "reason": want[n]} for n in ("LICENSE", "README.md", "make.py", "sub/notes.jsonl")]
    # --strict: the first file no reader takes is fatal, and nothing is written
    assert run_cli("ingest", folder, "--workspace", ws, "--name", "g", "--strict") == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {folder / 'LICENSE'}: not a data file (no extension) (--strict: every file of a folder must be ingestable; nothing was written)")
    assert not (ws / "datasets" / "g").exists()
    # a folder whose files no reader takes: exit 2
    (folder / "train.jsonl").unlink()
    assert run_cli("ingest", folder, "--workspace", ws, "--name", "h") == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: nothing to ingest: no reader takes any of the 4 files given")


def test_append_replace_and_existing_name(ws, tmp_path):
    a = write_jsonl(tmp_path / "a" / "train.jsonl", [good(1), good(2)])
    b = write_jsonl(tmp_path / "b" / "train.jsonl", [good(2), good(3)])
    assert run_cli("ingest", a, "--workspace", ws, "--name", "d") == 0
    assert run_cli("ingest", b, "--workspace", ws, "--name", "d") == 2
    assert run_cli("ingest", b, "--workspace", ws, "--name", "d", "--append") == 0
    assert sorted(table(ws, "d", "responses")["response"]) == ["r1", "r2", "r3"]
    assert table(ws, "d", "ratings").height == 15  # good(2)'s rows are not doubled
    assert len(manifest(ws, "d")["sources"]) == 2
    assert run_cli("ingest", b, "--workspace", ws, "--name", "d", "--append") == 0  # same sha256: skipped
    assert len(manifest(ws, "d")["sources"]) == 2
    assert run_cli("ingest", b, "--workspace", ws, "--name", "d", "--replace") == 0
    assert sorted(table(ws, "d", "responses")["response"]) == ["r2", "r3"]


def test_interrupted_ingest_leaves_old_dataset(ws, tmp_path):
    """Kill an ingest mid-way (SIGKILL): the old dataset stays whole and no staging is visible."""
    a = write_jsonl(tmp_path / "a" / "train.jsonl", [good(1)])
    assert run_cli("ingest", a, "--workspace", ws, "--name", "d") == 0
    big = write_jsonl(tmp_path / "big" / "train.jsonl", [good(i) for i in range(300_000)])
    code = (
        "import os, signal, sys\n"
        "import helpsteer.ingest as ing\n"
        "orig = ing._ingest_chunk\n"
        "def boom(*a, **k):\n"
        "    orig(*a, **k); os.kill(os.getpid(), signal.SIGKILL)\n"
        "ing._ingest_chunk = boom\n"
        "from helpsteer.cli import main\n"
        f"sys.exit(main(['ingest', {str(big)!r}, '--workspace', {str(ws)!r}, '--name', 'd', '--replace']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT)
    assert proc.returncode == -9
    assert table(ws, "d", "responses")["response"].to_list() == ["r1"]
    assert manifest(ws, "d")["tables"]["responses"] == 1
    # the next command cleans the dead process's staging folder
    assert run_cli("ingest", a, "--workspace", ws, "--name", "e") == 0
    assert not list((ws / "datasets").glob(".tmp-*"))


def test_fast_path_equals_line_by_line_path(tmp_path):
    """The polars chunk parser and the per-line checker give the same typed frame, also when the
    chunk holds lines that polars would have coerced silently (a number where text belongs)."""
    _load_all()
    fmt = FORMATS["helpsteer2-disagreements"]
    rng = random.Random(0)
    rows = []
    for i in range(3000):
        r = {"prompt": f"p{i % 50}", "response": f"resp {i}", **{a: [rng.randint(0, 4) for _ in range(3)] for a in ("helpfulness", "correctness", "coherence", "complexity", "verbosity")}}
        rows.append(r)
    rows[10]["response"] = 42
    rows[11]["prompt"] = True
    rows[12]["response"] = 'text with "response": 5 inside'
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    frames = {}
    for fast in (True, False):
        st_ = SourceState(path)
        chunks = list(iter_chunks(path, fmt.spec, st_, fast=fast))
        frames[fast] = (pl.concat([c.frame for c in chunks]).sort("_line"), sorted((b.line, b.reason) for c in chunks for b in c.bad))
    assert frames[True][1] == frames[False][1] == [(11, "field 'response': expected a string, got integer 42"), (12, "field 'prompt': expected a string, got boolean true")]
    assert frames[True][0].equals(frames[False][0])


record_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["role", "content", "score", "strength", "x"]), children, max_size=3),
    max_leaves=6,
)
FIELDS = ["prompt", "response", "helpfulness", "correctness", "coherence", "complexity", "verbosity", "context", "response1", "response2",
          "overall_preference", "individual_preference", "chosen", "rejected", "data", "annotations", "id", "label", "split"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    records=st.lists(st.dictionaries(st.sampled_from(FIELDS), record_values, max_size=8), min_size=1, max_size=12),
    garbage=st.lists(st.binary(max_size=20), max_size=3),
    fmt=st.sampled_from(["helpsteer2", "helpsteer2-disagreements", "helpsteer2-preference", "helpsteer3-preference", "helpsteer3-feedback",
                         "hh-rlhf", "pairs", "rewardbench", "rm-bench", "judgebench", "pandalm", "label-studio", "helpsteer3-principle"]),
)
def test_fuzzed_records_never_crash_and_never_lose_a_record(tmp_path_factory, records, garbage, fmt):
    tmp = tmp_path_factory.mktemp("fuzz")
    lines = [json.dumps(r).encode() for r in records] + [g.replace(b"\n", b" ") for g in garbage if g.strip()]
    path = tmp / "train.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    ws = tmp / "ws"
    rc = run_cli("ingest", path, "--workspace", ws, "--name", "f", "--format", fmt)
    assert rc in (0, 2)
    if rc == 0:
        src = manifest(ws, "f")["sources"][0]
        assert src["records"] == src["ingested"] + src["quarantined"]
        assert src["records"] == sum(1 for line in lines if line.strip())
        assert len(quarantine(ws, "f")) == src["quarantined"]
    else:
        assert not (ws / "datasets" / "f").exists()


NEW_FIELDS = ["input", "output_1", "output_2", "label", "passage-id", "questions", "first_draft", "random_cot", "best_cot", "annotations", "instruction",
              "id", "story_id", "story_name", "plot", "content", "expert_idx", "ttcw_idx", "binary_verdict", "explanation", "metadata", "document"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(records=st.lists(st.dictionaries(st.sampled_from(NEW_FIELDS), record_values, max_size=10), min_size=1, max_size=10),
       fmt=st.sampled_from(["llmbar", "squality", "wqrm", "ttcw", "llmfao"]))
def test_fuzzed_records_never_crash_the_dataset_readers(tmp_path_factory, records, fmt):
    """The LLMBar, SQuALITY, WQRM, TTCW and LLMFAO readers: any record is ingested or quarantined."""
    tmp = tmp_path_factory.mktemp("fuzz")
    path = write_jsonl(tmp / "data.jsonl", records)
    ingest_accounts_for_all(path, len(records), "--format", fmt)


@pytest.mark.parametrize("corrupt", ["flip", "cut", "zero"])
def test_corrupted_gzip_bytes(ws, tmp_path, corrupt):
    data = gzip.compress(("\n".join(json.dumps(good(i)) for i in range(500)) + "\n").encode())
    b = bytearray(data)
    if corrupt == "flip":
        for i in range(len(b) // 2, len(b) // 2 + 8):
            b[i] ^= 0xFF
    elif corrupt == "cut":
        b = b[:-10]
    else:
        b[len(b) // 3 :] = bytes(len(b) - len(b) // 3)
    path = tmp_path / "train.jsonl.gz"
    path.write_bytes(bytes(b))
    rc = run_cli("ingest", path, "--workspace", ws, "--name", "g")
    assert rc in (0, 2)
    if rc == 0:
        src = manifest(ws, "g")["sources"][0]
        assert src["records"] == src["ingested"] + src["quarantined"] and src["truncated"]


def test_readers_split_from_name():
    assert containers.split_from_name(Path("x/train.jsonl.gz")) == "train"
    assert containers.split_from_name(Path("x/validation.jsonl.gz")) == "validation"
    assert containers.split_from_name(Path("hh/harmless-base/test.jsonl.gz")) == "test"
    assert containers.split_from_name(Path("pandalm-testset/data/testset-v1.json")) is None


def test_fields_that_appear_late_in_a_chunk_are_not_dropped(ws, tmp_path):
    """polars infers a chunk's schema from its first rows; a field first seen later must survive."""
    rows = [dict(good(i)) for i in range(1500)]
    rows[1400]["split"] = "validation"
    rows[1450]["helpfulness"] = 2.0  # float after ints: same value, no quarantine
    rows[1460]["coherence"] = 2.5  # a real non-integer: quarantined
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    assert run_cli("ingest", path, "--workspace", ws, "--name", "late") == 0
    resp = table(ws, "late", "responses")
    assert resp.filter(pl.col("split") == "validation")["response"].to_list() == ["r1400"]
    q = quarantine(ws, "late")
    assert [r["line"] for r in q] == [1461] and "coherence" in q[0]["reason"] and "2.5" in q[0]["reason"]
