"""Shared fixtures: tiny workspaces, synthetic data, and the real datasets in ../shared/data."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from helpsteer.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real dataset not available: {path} (../shared/data is absent)")
    return path


def write_jsonl(path: Path, records, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def run_cli(*args) -> int:
    return main([str(a) for a in args])


def table(ws: Path, name: str, t: str) -> pl.DataFrame:
    return pl.read_parquet(ws / "datasets" / name / f"{t}.parquet")


def manifest(ws: Path, name: str) -> dict:
    return json.loads((ws / "datasets" / name / "manifest.json").read_text())


def quarantine(ws: Path, name: str) -> list[dict]:
    p = ws / "datasets" / name / "quarantine.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    from helpsteer.synth import SynthConfig, write_synthetic

    out = tmp_path_factory.mktemp("synth")
    write_synthetic(SynthConfig(seed=3, n_prompts=120), out)
    return out
