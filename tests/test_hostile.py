"""Hostile records at ingest (issue 19 point 4): deep JSON, huge CSV fields and lines, corrupt
parquet, byte order marks, an odd record among the first ones, duplicate keys, unreadable files.
Each ends as a quarantine entry or one line and exit 2, never a traceback. Every case runs the
real `helpsteer ingest` in its own process, on files written under tmp_path/in/data."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import ROOT

GOOD = {"prompt": "q", "response": "r", "helpfulness": 3, "correctness": 3, "coherence": 3, "complexity": 1, "verbosity": 1}
DEEP = "[" * 10_000 + "]" * 10_000


def good(i: int, **kw) -> dict:
    return {**GOOD, "prompt": f"q{i}", "response": f"r{i}", **kw}


def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "in" / "data"  # two folders deep: the split comes from folder names, and tmp names contain "test"
    d.mkdir(parents=True, exist_ok=True)
    return d


def ingest(tmp_path: Path, *paths, name: str = "d", env: dict | None = None, extra=()) -> subprocess.CompletedProcess:
    """`helpsteer ingest` in a fresh process: exit code and stderr as a user sees them."""
    cmd = [sys.executable, "-m", "helpsteer.cli", "ingest", *map(str, paths), "--workspace", str(tmp_path / "ws"), "--name", name, *extra]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.run(cmd, check=False, cwd=tmp_path, env=full_env, capture_output=True, text=True)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines, proc.stderr
    assert [ln for ln in lines if ln.startswith("error: ")] == [lines[-1]]  # exactly one error line, last
    return lines[-1]


def responses(tmp_path: Path, name: str = "d") -> list[str]:
    return pl.read_parquet(tmp_path / "ws" / "datasets" / name / "responses.parquet")["response"].to_list()


def quarantine(tmp_path: Path, name: str = "d") -> list[dict]:
    p = tmp_path / "ws" / "datasets" / name / "quarantine.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


def source(tmp_path: Path, name: str = "d") -> dict:
    man = json.loads((tmp_path / "ws" / "datasets" / name / "manifest.json").read_text())
    return man["sources"][0]


# --- JSON nested 10,000 deep -------------------------------------------------------------------
def test_deep_json_record_is_quarantined_in_every_container(tmp_path):
    deep = '{"prompt": "q", "response": "r", "x": ' + DEEP + "}"
    cases = {
        "rows.jsonl": json.dumps(good(1)) + "\n" + deep + "\n" + json.dumps(good(2)) + "\n",
        "rows.json": "[" + ", ".join([json.dumps(good(1)), deep, json.dumps(good(2))]) + "]",
        "broken.json": "[" + ", ".join([json.dumps(good(1)), deep, json.dumps(good(2)), "{oops}"]) + "]",  # the element-by-element path
    }
    for i, (name, text) in enumerate(cases.items()):
        path = data_dir(tmp_path) / name
        path.write_text(text)
        proc = ingest(tmp_path, path, name=f"d{i}", extra=("--format", "helpsteer2"))
        assert proc.returncode == 0, (name, proc.stderr)
        q = quarantine(tmp_path, f"d{i}")
        assert q[0]["line"] == 2 and "depth limit exceeded" in q[0]["reason"], name
        assert [r["line"] for r in q] == ([2, 4] if name == "broken.json" else [2]), name
        assert responses(tmp_path, f"d{i}") == ["r1", "r2"], name


def nested_object(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


def test_deeply_nested_objects_are_read_by_orjson_or_quarantined(tmp_path):
    """Objects 200 and 700 deep: polars' JSON reader takes seconds on the first and crashes the
    process on the second (so such lines never reach it); the first is ingested, the second,
    deeper than quarantine.jsonl can hold (254 levels), quarantined."""
    for depth, ingested in ((200, True), (700, False)):
        deep = '{"prompt": "q", "response": "deep", "helpfulness": 3, "correctness": 3, "coherence": 3, "complexity": 1, "verbosity": 1, "x": ' + nested_object(depth) + "}"
        files = {f"rows{depth}.jsonl": "\n".join([json.dumps(good(1)), deep, json.dumps(good(2))]) + "\n",
                 f"rows{depth}.json": "[" + ", ".join([json.dumps(good(1)), deep, json.dumps(good(2))]) + "]"}
        for name, text in files.items():
            path = data_dir(tmp_path) / name
            path.write_text(text)
            proc = ingest(tmp_path, path, name=name.replace(".", "-"))
            assert proc.returncode == 0, (name, proc.stderr)
            q = quarantine(tmp_path, name.replace(".", "-"))
            if ingested:
                assert (q, sorted(responses(tmp_path, name.replace(".", "-")))) == ([], ["deep", "r1", "r2"]), name
            else:
                assert [(r["line"], r["reason"]) for r in q] == [(2, "invalid JSON: nested deeper than 254 levels")], name
                assert responses(tmp_path, name.replace(".", "-")) == ["r1", "r2"], name


def test_mapped_label_nested_1000_deep_is_quarantined(tmp_path):
    deep = "[" * 1000 + "1" + "]" * 1000
    d = data_dir(tmp_path)
    rows = [json.dumps({"input": "q1", "a": "x1", "b": "y1", "lab": 1}), '{"input": "q2", "a": "x2", "b": "y2", "lab": ' + deep + "}",
            json.dumps({"input": "q3", "a": "x3", "b": "y3", "lab": 2})]
    (d / "m.jsonl").write_text("\n".join(rows) + "\n")
    (d / "m.csv").write_text("input,a,b,lab\nq1,x1,y1,1\nq2,x2,y2," + deep + "\nq3,x3,y3,2\n")
    mapping = ("--format", "pairs", "--map", "prompt=input,response_a=a,response_b=b,label=lab", "--label-values", "1=1,2=2")
    for i, (name, line) in enumerate((("m.jsonl", 2), ("m.csv", 3))):
        proc = ingest(tmp_path, d / name, name=f"m{i}", extra=mapping)
        assert proc.returncode == 0, (name, proc.stderr)
        assert [r["line"] for r in quarantine(tmp_path, f"m{i}")] == [line], name
        assert sorted(responses(tmp_path, f"m{i}")) == ["x1", "x3", "y1", "y3"], name


# --- a CSV field over 128 KB ---------------------------------------------------------------------
def write_pairs_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(["prompt", "chosen", "rejected"])
        w.writerows(rows)
    return path


def test_csv_field_over_128kb_is_read(tmp_path):
    big = "x" * 200_000  # over the csv module's default 131072-character field limit
    path = write_pairs_csv(data_dir(tmp_path) / "pairs.csv", [["q1", "a1", "b1"], ["q2", big, "b2"], ["q3", "a3", "b3"]])
    proc = ingest(tmp_path, path)
    assert proc.returncode == 0, proc.stderr
    assert "format pairs (auto-detected)" in proc.stderr
    assert quarantine(tmp_path) == []
    assert sorted(responses(tmp_path)) == ["a1", "a3", "b1", "b2", "b3", big]


def test_csv_line_or_field_over_the_limit_is_quarantined(tmp_path):
    rows = [["q1", "a1", "b1"], ["q2", "y" * 5000, "b2"], ["q3", "a3", "b3"], ["q4", "w" * 600 + "\n" + "w" * 600, "b4"], ["q5", "a5", "b5"]]
    path = write_pairs_csv(data_dir(tmp_path) / "pairs.csv", rows)
    proc = ingest(tmp_path, path, env={"HELPSTEER_MAX_LINE_BYTES": "1000"})
    assert proc.returncode == 0, proc.stderr
    q = quarantine(tmp_path)
    assert [(r["line"], r["reason"]) for r in q] == [
        (3, "malformed CSV: line longer than 1000 characters (HELPSTEER_MAX_LINE_BYTES); not read"),
        (6, "malformed CSV: a field longer than 1000 characters (HELPSTEER_MAX_LINE_BYTES); not read"),  # a quoted field over 2 lines
    ]
    assert q[0]["record"] == ("q2," + "y" * 5000)[:1002]  # the start that was read: the limit and room for a CRLF
    assert sorted(responses(tmp_path)) == ["a1", "a3", "a5", "b1", "b3", "b5"]
    src = source(tmp_path)
    assert (src["records"], src["ingested"], src["quarantined"]) == (5, 3, 2)


def test_csv_line_of_exactly_the_limit_keeps_line_numbers(tmp_path):
    """CRLF lines of exactly the limit (read) and one over it (quarantined): the line after them
    keeps its own number (a read that stopped between CR and LF once counted the LF as a line)."""
    rows = [["q1", "a1", "b1"], ["q2", "y" * 994, "b2"], ["q3", "z" * 995, "b3"], ["q4", "a4"], ["q5", "a5", "b5"]]
    path = write_pairs_csv(data_dir(tmp_path) / "pairs.csv", rows)  # csv.writer ends lines with CRLF
    assert [len(line) for line in path.read_bytes().split(b"\r\n")[2:4]] == [1000, 1001]
    proc = ingest(tmp_path, path, env={"HELPSTEER_MAX_LINE_BYTES": "1000"})
    assert proc.returncode == 0, proc.stderr
    assert [(r["line"], r["reason"]) for r in quarantine(tmp_path)] == [
        (4, "malformed CSV: line longer than 1000 characters (HELPSTEER_MAX_LINE_BYTES); not read"),
        (5, "row has 2 fields, the header has 3"),
    ]
    assert sorted(responses(tmp_path)) == ["a1", "a5", "b1", "b2", "b5", "y" * 994]


def test_bad_max_line_bytes_setting_is_one_line(tmp_path):
    path = write_pairs_csv(data_dir(tmp_path) / "pairs.csv", [["q1", "a1", "b1"]])
    proc = ingest(tmp_path, path, env={"HELPSTEER_MAX_LINE_BYTES": "lots"})
    assert error_line(proc) == "error: HELPSTEER_MAX_LINE_BYTES='lots': must be a positive whole number of bytes (default 33554432)"


# --- truncated or corrupt parquet ------------------------------------------------------------------
def parquet_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    d = data_dir(tmp_path)
    whole = d / "ok.parquet"
    pl.DataFrame([good(i) for i in range(5)]).write_parquet(whole)
    data = whole.read_bytes()
    cut = d / "cut.parquet"
    cut.write_bytes(data[: len(data) // 2])
    junk = d / "junk.parquet"
    junk.write_bytes(b"PAR1" + b"\0" * 100 + b"PAR1")
    return whole, cut, junk


def test_truncated_or_corrupt_parquet_is_one_line(tmp_path):
    _, cut, junk = parquet_files(tmp_path)
    assert error_line(ingest(tmp_path, cut)) == (
        f"error: {cut}: not a readable parquet file (parquet: File out of specification: The file must end with PAR1 or PARE)")
    assert error_line(ingest(tmp_path, junk)) == (
        f"error: {junk}: not a readable parquet file (parquet: File out of specification: FileMetaData.version missing)")
    assert not (tmp_path / "ws" / "datasets" / "d").exists()


def test_parquet_damaged_after_its_first_rows_is_one_line(tmp_path):
    """The footer and the first row group read (so the format is recognised), a later page does not."""
    path = data_dir(tmp_path) / "mid.parquet"
    pl.DataFrame([good(i, response=f"r{i}" * 50) for i in range(2000)]).write_parquet(path, row_group_size=200, compression="zstd")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 500] = bytes(b ^ 0xFF for b in data[middle : middle + 500])
    path.write_bytes(bytes(data))
    proc = ingest(tmp_path, path)
    assert "format helpsteer2 (auto-detected)" in proc.stderr
    assert error_line(proc).startswith(f"error: {path}: not a readable parquet file (parquet: ")
    assert not (tmp_path / "ws" / "datasets" / "d").exists()


def test_corrupt_parquet_in_a_folder_is_skipped(tmp_path):
    whole, cut, junk = parquet_files(tmp_path)
    folder = whole.parent
    proc = ingest(tmp_path, folder)
    assert proc.returncode == 0, proc.stderr
    assert f"skipped {cut}: not a readable parquet file (parquet: File out of specification: The file must end with PAR1 or PARE)" in proc.stderr.splitlines()
    assert f"skipped {junk}: not a readable parquet file (parquet: File out of specification: FileMetaData.version missing)" in proc.stderr.splitlines()
    assert sorted(responses(tmp_path)) == [f"r{i}" for i in range(5)]
    assert error_line(ingest(tmp_path, folder, name="s", extra=("--strict",))).startswith(f"error: {cut}: not a readable parquet file (")


def test_damaged_datasets_folder_is_one_line(tmp_path):
    datasets = pytest.importorskip("datasets")
    d = data_dir(tmp_path)
    rows = {k: [v, v] for k, v in GOOD.items()}
    for name in ("cut", "state"):
        datasets.Dataset.from_dict(rows).save_to_disk(str(d / name))
    (arrow,) = (d / "cut").glob("*.arrow")
    arrow.write_bytes(arrow.read_bytes()[:100])
    (d / "state" / "state.json").write_text("{oops")
    assert error_line(ingest(tmp_path, d / "cut")).startswith(f"error: {d / 'cut'}: not a readable datasets.save_to_disk folder (ArrowInvalid: ")
    assert error_line(ingest(tmp_path, d / "state")) == (
        f"error: {d / 'state'}: not a readable datasets.save_to_disk folder "
        "(JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1))")
    assert not (tmp_path / "ws" / "datasets" / "d").exists()


# --- a UTF-8 byte order mark ----------------------------------------------------------------------
def test_bom_csv_keeps_its_header(tmp_path):
    path = write_pairs_csv(data_dir(tmp_path) / "pairs.csv", [["q1", "a1", "b1"], ["q2", "a2", "b2"]], encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbfprompt,")
    proc = ingest(tmp_path, path)
    assert proc.returncode == 0, proc.stderr
    assert "format pairs (auto-detected)" in proc.stderr
    assert quarantine(tmp_path) == []
    df = pl.read_parquet(tmp_path / "ws" / "datasets" / "d" / "responses.parquet")
    assert sorted(df["prompt"].to_list()) == ["q1", "q1", "q2", "q2"]


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.jsonl.gz", "rows.json"])
def test_bom_json_keeps_the_first_record(tmp_path, name):
    recs = [good(1), good(2)]
    text = json.dumps(recs) if name == "rows.json" else "".join(json.dumps(r) + "\n" for r in recs)
    raw = b"\xef\xbb\xbf" + text.encode()
    path = data_dir(tmp_path) / name
    path.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    proc = ingest(tmp_path, path)
    assert proc.returncode == 0, proc.stderr
    assert "format helpsteer2 (auto-detected)" in proc.stderr
    assert quarantine(tmp_path) == []
    assert responses(tmp_path) == ["r1", "r2"]


def ingest_squality_review(tmp_path: Path, data: Path) -> subprocess.CompletedProcess:
    """Writes one SQuALITY review (passage 7, question 0) to DATA/human-eval and ingests it as `sq`,
    asserting exit 0."""
    review = {"worker_id": "2", "correctness-rating": 50, "selection-rating": 20, "overall-rating": 30, "annotations": []}
    line = {"passage-id": "7", "questions": {"0": {"bart": {"response": "a summary", "reviews": [review]}}}}
    (data / "human-eval").mkdir()
    (data / "human-eval" / "all-responses.jsonl").write_text(json.dumps(line) + "\n")
    proc = ingest(tmp_path, data / "human-eval" / "all-responses.jsonl", name="sq")
    assert proc.returncode == 0, proc.stderr
    return proc


def test_bom_on_companion_files_beside_the_data(tmp_path):
    """Files read beside the one named (SQuALITY's stories, TTCW's tests) drop a BOM too."""
    bom = b"\xef\xbb\xbf"
    data = tmp_path / "squality" / "data"
    (data / "v1-3" / "txt").mkdir(parents=True)
    story = {"metadata": {"passage_id": "7"}, "document": "A story.", "questions": [{"question_text": "What happens?"}]}
    (data / "v1-3" / "txt" / "test.jsonl").write_bytes(bom + json.dumps(story).encode() + b"\n")
    ingest_squality_review(tmp_path, data)
    df = pl.read_parquet(tmp_path / "ws" / "datasets" / "sq" / "responses.parquet")
    assert df.select("prompt", "flags").rows() == [("What happens?", [])]

    base = tmp_path / "ttcw" / "Art_or_Artifice"
    stories = [{"story_idx": 0, "story_id": "0_GPT4", "story_name": "T", "plot": "P", "content": "Once upon a time."}]
    ann = [{"story_id": "0_GPT4", "expert_idx": 1, "ttcw_idx": 1, "category": "Narrative Ending", "binary_verdict": "Yes", "explanation": "earned"}]
    tests = [{"ttcw_idx": "1", "torrance_dimension": "Fluency", "category": "Narrative Ending", "question": "Is the ending earned?", "full_prompt": "..."}]
    for rel, rows in (("stories/s.json", stories), ("annotations/a.json", ann), ("tests/ttcw_all_tests.json", tests)):
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(bom + json.dumps(rows).encode())
    proc = ingest(tmp_path, base / "annotations" / "a.json", base / "stories" / "s.json", name="tt")
    assert proc.returncode == 0, proc.stderr
    assert pl.read_parquet(tmp_path / "ws" / "datasets" / "tt" / "principles.parquet")["principle"].to_list() == ["Is the ending earned?"]


# --- one odd record among the first ones must not decide the format -------------------------------
def ingest_detected(tmp_path: Path, file: str, recs: list[dict], fmt: str) -> None:
    """Writes RECS as JSON Lines to FILE in the data folder and ingests it: exit 0, format FMT auto-detected."""
    path = data_dir(tmp_path) / file
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    proc = ingest(tmp_path, path)
    assert proc.returncode == 0, proc.stderr
    assert f"{path}: format {fmt} (auto-detected)" in proc.stderr


def test_null_label_first_does_not_hide_llmbar(tmp_path):
    recs = [{"input": f"q{i}", "output_1": f"a{i}", "output_2": f"b{i}", "label": 1 + i % 2} for i in range(6)]
    recs[0]["label"] = None
    ingest_detected(tmp_path, "llmbar.jsonl", recs, "llmbar")
    assert [(q["line"], q["reason"]) for q in quarantine(tmp_path)] == [(1, "field 'label': missing or null")]


def test_null_chosen_first_does_not_turn_rm_bench_into_pairs(tmp_path):
    recs = [{"id": i, "prompt": f"q{i}", "chosen": [f"a{i}", "x", "y"], "rejected": [f"b{i}", "z", "w"], "domain": "chat"} for i in range(6)]
    recs[0]["chosen"] = None
    ingest_detected(tmp_path, "rmb.jsonl", recs, "rm-bench")
    assert [q["line"] for q in quarantine(tmp_path)] == [1]
    assert source(tmp_path)["ingested"] == 5


def test_odd_first_record_does_not_decide_the_format(tmp_path):
    recs = [dict(GOOD, chosen="c", rejected="d")] + [{"prompt": f"q{i}", "chosen": f"a{i}", "rejected": f"b{i}"} for i in range(6)]
    ingest_detected(tmp_path, "pairs.jsonl", recs, "pairs")
    src = source(tmp_path)
    assert (src["records"], src["ingested"], src["quarantined"]) == (7, 7, 0)


def test_null_record_first_is_quarantined_by_name(tmp_path):
    path = data_dir(tmp_path) / "rows.jsonl"
    path.write_text("null\n" + "".join(json.dumps(good(i)) + "\n" for i in range(3)))
    proc = ingest(tmp_path, path)
    assert proc.returncode == 0, proc.stderr
    assert [(q["line"], q["reason"]) for q in quarantine(tmp_path)] == [(1, "record is null, not a JSON object")]


# --- duplicate JSON keys: the last one wins, on every path ------------------------------------------
DUP_LINE = '{"prompt": "q1", "response": "first", "helpfulness": 0, "response": "last", "correctness": 3, "coherence": 3, "complexity": 1, "verbosity": 1, "helpfulness": 4}'


def test_duplicate_keys_last_one_wins_on_every_path(tmp_path):
    """The same record gives the same values whether polars reads the chunk (a clean JSON Lines
    file), orjson line by line (another line is broken), or the JSON array reader does."""
    d = data_dir(tmp_path)
    lines = DUP_LINE + "\n" + json.dumps(good(2)) + "\n"
    files = {
        "clean.jsonl": lines.encode(),
        "broken.jsonl": (lines + "{broken\n").encode(),
        "clean.jsonl.gz": gzip.compress(lines.encode()),
        "clean.json": ("[" + DUP_LINE + ", " + json.dumps(good(2)) + "]").encode(),
        "broken.json": ("[" + DUP_LINE + ", " + json.dumps(good(2)) + ", {broken}]").encode(),
    }
    seen = {}
    for i, (name, raw) in enumerate(files.items()):
        (d / name).write_bytes(raw)
        proc = ingest(tmp_path, d / name, name=f"d{i}", extra=("--format", "helpsteer2"))
        assert proc.returncode == 0, (name, proc.stderr)
        ratings = pl.read_parquet(tmp_path / "ws" / "datasets" / f"d{i}" / "ratings.parquet")
        seen[name] = (responses(tmp_path, f"d{i}"), ratings.filter(pl.col("attribute") == "helpfulness")["score"].to_list())
    assert seen == {name: (["last", "r2"], [4.0, 3.0]) for name in files}


def test_duplicate_nested_keys_last_one_wins_on_every_path(tmp_path):
    """Inside a list of objects too (HelpSteer3's context turns and votes)."""
    line = ('{"domain": "general", "language": "english", "context": [{"role": "user", "content": "first", "content": "Another"}], '
            '"response1": "Snow", "response2": "Rain", "overall_preference": 2, '
            '"individual_preference": [{"score": 1, "reasoning": "r", "score": -2}]}')
    other = json.dumps({"domain": "general", "language": "english", "context": [{"role": "user", "content": "Q2"}], "response1": "A",
                        "response2": "B", "overall_preference": 1, "individual_preference": [{"score": 1, "reasoning": "s"}]})
    d = data_dir(tmp_path)
    seen = {}
    for i, name in enumerate(["clean.jsonl", "broken.jsonl"]):
        (d / name).write_text(line + "\n" + other + "\n" + ("{broken\n" if name.startswith("broken") else ""))
        proc = ingest(tmp_path, d / name, name=f"d{i}")
        assert proc.returncode == 0, (name, proc.stderr)
        assert f"{d / name}: format helpsteer3-preference (auto-detected)" in proc.stderr
        prompts = sorted(set(pl.read_parquet(tmp_path / "ws" / "datasets" / f"d{i}" / "responses.parquet")["prompt"]))
        votes = pl.read_parquet(tmp_path / "ws" / "datasets" / f"d{i}" / "preferences.parquet").filter(pl.col("annotator_id").is_not_null())
        seen[name] = (prompts, sorted(votes["strength"].to_list()))
    assert seen == {name: (["Another", "Q2"], [-2.0, 1.0]) for name in seen}


# --- an unreadable file ------------------------------------------------------------------------
def make_unreadable(path: Path) -> str:
    """A file whose reads fail: mode 000 for an ordinary user; root reads through permissions, so
    for root a link to /proc/self/mem, whose first page no process can read (EIO)."""
    if os.geteuid() != 0:
        path.write_text(json.dumps(good(9)) + "\n")
        path.chmod(0)
        return "Permission denied"
    path.symlink_to("/proc/self/mem")
    return "Input/output error"


def test_unreadable_file_single_and_in_a_folder(tmp_path):
    d = data_dir(tmp_path)
    (d / "a.jsonl").write_text(json.dumps(good(1)) + "\n")
    bad = d / "b.jsonl"
    why = make_unreadable(bad)
    assert error_line(ingest(tmp_path, bad)) == f"error: {bad}: unreadable file ({why})"
    proc = ingest(tmp_path, d)
    assert proc.returncode == 0, proc.stderr
    assert f"skipped {bad}: unreadable file ({why})" in proc.stderr.splitlines()
    assert responses(tmp_path) == ["r1"]
    man = json.loads((tmp_path / "ws" / "datasets" / "d" / "manifest.json").read_text())
    assert man["skipped"] == [{"path": str(bad), "reason": f"unreadable file ({why})"}]


def test_unreadable_squality_stories_file_is_a_warning(tmp_path):
    data = tmp_path / "squality" / "data"
    (data / "v1-3" / "txt").mkdir(parents=True)
    stories = data / "v1-3" / "txt" / "test.jsonl"
    why = make_unreadable(stories)
    proc = ingest_squality_review(tmp_path, data)
    assert f"  warning: squality: {stories.parent.resolve() / stories.name} is unreadable ({why}); the questions of its stories are missing" in proc.stderr.splitlines()
    df = pl.read_parquet(tmp_path / "ws" / "datasets" / "sq" / "responses.parquet")
    assert df.select("prompt", "flags").rows() == [("SQuALITY passage 7, question 1", ["no_question_text"])]


# --- huge single lines: quarantined, never held whole ---------------------------------------------
def test_line_over_the_limit_is_quarantined(tmp_path):
    path = data_dir(tmp_path) / "rows.jsonl"
    long = json.dumps(good(2, response="z" * 5000))
    path.write_text(json.dumps(good(1)) + "\n" + long + "\n" + json.dumps(good(3)) + "\n")
    proc = ingest(tmp_path, path, env={"HELPSTEER_MAX_LINE_BYTES": "1000"})
    assert proc.returncode == 0, proc.stderr
    (q,) = quarantine(tmp_path)
    assert (q["line"], q["reason"]) == (2, "line longer than 1000 bytes (HELPSTEER_MAX_LINE_BYTES); not read")
    assert q["record"] == long[:2000]
    assert responses(tmp_path) == ["r1", "r3"]
    src = source(tmp_path)
    assert (src["records"], src["ingested"], src["quarantined"]) == (3, 2, 1)


# The CLI in a child that reports its own peak resident memory (VmHWM: the high-water mark of
# this process image, which, unlike ru_maxrss, does not inherit the test process's own).
_PEAK = """import atexit, sys
from helpsteer.cli import main
def report():
    with open("/proc/self/status") as f, open(sys.argv[1], "w") as out:
        out.write(next(line for line in f if line.startswith("VmHWM:")).split()[1])
atexit.register(report)
sys.exit(main(sys.argv[2:]))
"""


def peak_rss_mib(args: list[str], tmp_path: Path) -> tuple[int, float]:
    """(exit code, peak resident memory in MiB) of `helpsteer ARGS` in its own process."""
    report = tmp_path / f"peak-{len(list(tmp_path.glob('peak-*')))}.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _PEAK, str(report), *args], check=False, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, int(report.read_text()) / 1024  # VmHWM is in kB


def write_with_long_line(path: Path, before: str, start: str, end: str, after: str, size: int) -> None:
    """before + start + 'z' * size + end + after, written in pieces (this process stays small)."""
    with open(path, "w") as f:
        f.write(before + start)
        f.writelines("z" * 1_000_000 for _ in range(size // 1_000_000))
        f.write(end + after)


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_100mb_line_is_quarantined_in_bounded_memory(tmp_path, kind):
    """With the default limit (32 MiB) a 100 MB line is quarantined, and the ingest's peak memory
    stays below that of the same ingest without the line plus the line's own size."""
    d = data_dir(tmp_path)
    small, huge = d / "small" / f"rows.{kind}", d / "huge" / f"rows.{kind}"
    small.parent.mkdir()
    huge.parent.mkdir()
    if kind == "jsonl":
        small.write_text(json.dumps(good(1)) + "\n" + json.dumps(good(3)) + "\n")
        head, tail = json.dumps(good(2, response="@")).split("@")
        write_with_long_line(huge, json.dumps(good(1)) + "\n", head, tail + "\n", json.dumps(good(3)) + "\n", 100_000_000)
        reason, line, kept = "line longer than 33554432 bytes (HELPSTEER_MAX_LINE_BYTES); not read", 2, ["r1", "r3"]
    else:
        write_pairs_csv(small, [["q1", "a1", "b1"], ["q3", "a3", "b3"]])
        write_with_long_line(huge, "prompt,chosen,rejected\nq1,a1,b1\n", "q2,", ",b2\n", "q3,a3,b3\n", 100_000_000)
        reason, line, kept = "malformed CSV: line longer than 33554432 characters (HELPSTEER_MAX_LINE_BYTES); not read", 3, ["a1", "b1", "a3", "b3"]
    base = ["ingest", "--workspace", str(tmp_path / "ws")]
    rc, baseline = peak_rss_mib([*base, str(small), "--name", "small"], tmp_path)
    assert rc == 0
    rc, peak = peak_rss_mib([*base, str(huge), "--name", "d"], tmp_path)
    assert rc == 0
    assert peak - baseline < 95, (baseline, peak)  # the line (95 MiB) was never held whole
    (q,) = quarantine(tmp_path)
    assert (q["line"], q["reason"]) == (line, reason)
    assert len(q["record"]) == 2000
    assert responses(tmp_path) == kept
