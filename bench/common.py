"""What the benchmark scripts share besides bench/ingest.py's harness: a fresh work folder, the --out
option, the printed table rows, the command line of a section and writing the section to RESULTS.md."""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from ingest import WORK, _write_section

ROOT = Path(__file__).resolve().parents[1]


def add_out_option(ap: argparse.ArgumentParser) -> None:
    """--out: the results file whose section the script replaces (bench/RESULTS.md)."""
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))


def fresh_work(name: str) -> Path:
    """WORK/NAME, emptied: removed if there, then created."""
    work = WORK / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def print_rows(rows: list[str]) -> None:
    for r in rows:
        print(r, flush=True)


def command_line(script: str, options: str) -> str:
    """The section's first line: the command that produced it, the machine's cores and the date."""
    return f"Command: `.venv/bin/python bench/{script} {options}` ({os.cpu_count()} cores, {time.strftime('%Y-%m-%d')})."


def publish(out: str, heading: str, section: str) -> None:
    """Writes SECTION under HEADING in the results file OUT and prints it."""
    _write_section(Path(out), heading, section)
    print(section)
