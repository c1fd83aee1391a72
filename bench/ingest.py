"""Ingest benchmark: `helpsteer ingest` of HelpSteer2-disagreements-style .jsonl.gz files (made by
`helpsteer synth`) against, in the same run, (a) the bare `polars.read_ndjson` parse of the same
file and (b) a typical script (json.loads loop + checks + DataFrame + parquet).

Run:  .venv/bin/python bench/ingest.py [--sizes 1M,10M] [--out bench/RESULTS.md]
Each measurement runs in a fresh process; peak memory is that process's max RSS."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work"
PY = sys.executable

MEASURE = r"""
import json, resource, sys, time
t = time.perf_counter()
exec(compile(open(sys.argv[1]).read(), sys.argv[1], "exec"), {"__name__": "__bench__", "ARGS": sys.argv[2:]})
wall = time.perf_counter() - t
print(json.dumps({"wall_s": wall, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

BARE = """
import polars as pl
df = pl.read_ndjson(ARGS[0])
assert df.height > 0
"""

TYPICAL = """
import gzip, json
import polars as pl
ATTRS = ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
rows, bad = [], []
with gzip.open(ARGS[0], "rt", encoding="utf-8") as f:
    for i, line in enumerate(f, 1):
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            bad.append(i); continue
        if not isinstance(r.get("prompt"), str) or not isinstance(r.get("response"), str):
            bad.append(i); continue
        ok = all(isinstance(r.get(a), list) and all(isinstance(v, int) and 0 <= v <= 4 for v in r[a]) for a in ATTRS)
        if not ok:
            bad.append(i); continue
        rid = hash((r["prompt"], r["response"]))
        for a in ATTRS:
            for k, v in enumerate(r[a]):
                rows.append({"response_id": rid, "annotator": k, "attribute": a, "score": float(v)})
df = pl.DataFrame(rows)
df.write_parquet(ARGS[1])
"""

OURS = """
from pathlib import Path
from helpsteer.cli import main
import shutil
shutil.rmtree(ARGS[1], ignore_errors=True)
assert main(["ingest", ARGS[0], "--workspace", ARGS[1], "--name", "bench"]) == 0
"""


def measure(code: str, *args: str) -> dict:
    script = WORK / f"_m_{abs(hash(code))}.py"
    script.write_text(code)
    env = dict(os.environ, POLARS_MAX_THREADS=os.environ.get("POLARS_MAX_THREADS", str(os.cpu_count() or 2)))
    t = time.perf_counter()
    out = subprocess.run([PY, "-c", MEASURE, str(script), *args], capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t
    return res


def make_file(label: str, n_ratings: int) -> tuple[Path, int, int]:
    """A disagreements file with about n_ratings ratings (5 attributes x 3-5 annotators each)."""
    folder = WORK / f"synth-{label}"
    path = folder / "helpsteer2" / "disagreements" / "disagreements.jsonl.gz"
    prompts = max(1, round(n_ratings / (2 * 5 * 3.3)))
    if not path.exists():
        subprocess.run([str(ROOT / ".venv/bin/helpsteer"), "synth", "--out", str(folder), "--prompts", str(prompts), "--only", "helpsteer2-disagreements", "--seed", "0"],
                       check=True, capture_output=True)
    import gzip

    records = ratings = 0
    with gzip.open(path, "rt") as f:
        for line in f:
            r = json.loads(line)
            records += 1
            ratings += 5 * len(r["helpfulness"])
    return path, records, ratings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="1M,10M")
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    lines = []
    for label in args.sizes.split(","):
        n = int(float(label.rstrip("M")) * 1_000_000)
        path, records, ratings = make_file(label, n)
        bare = measure(BARE, str(path))
        typical = measure(TYPICAL, str(path), str(WORK / "typical.parquet"))
        ours = measure(OURS, str(path), str(WORK / "ws"))
        size_mb = path.stat().st_size / 1e6
        row = (f"| {label} | {records:,} | {ratings:,} | {size_mb:.1f} | {ours['wall_s']:.2f} | {records / ours['wall_s']:,.0f} | {ours['peak_mb']:.0f} "
               f"| {bare['wall_s']:.2f} | {bare['peak_mb']:.0f} | {typical['wall_s']:.2f} | {typical['peak_mb']:.0f} "
               f"| {ours['wall_s'] / bare['wall_s']:.2f}x | {typical['wall_s'] / ours['wall_s']:.2f}x |")
        print(row, flush=True)
        lines.append(row)
    section = "\n".join([
        "## Ingest (`bench/ingest.py`)",
        "",
        f"Command: `.venv/bin/python bench/ingest.py --sizes {args.sizes}` ({os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}).",
        "HelpSteer2-disagreements-style `.jsonl.gz` made by `helpsteer synth`; each measurement in a fresh process",
        "(wall time of the script including its imports; peak = max RSS). `ours` is the whole `helpsteer ingest`:",
        "parse, type checks, validation, ids, quarantine, de-duplication and parquet writing.",
        "",
        "| size | records | ratings | gz MB | ours s | records/s | ours peak MB | bare parse s | bare peak MB | typical s | typical peak MB | ours / bare | typical / ours |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *lines,
        "",
    ])
    _write_section(Path(args.out), "## Ingest", section)


def _write_section(path: Path, heading: str, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmark results\n\nEach section is rewritten by its benchmark script.\n\n"
    pattern = re.compile(rf"^{re.escape(heading)}.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
