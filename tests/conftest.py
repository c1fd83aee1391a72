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


def torchrun(args, launch=("--standalone", "--nproc_per_node", "2"), timeout: int = 600) -> tuple[str, str]:
    """`python -m torch.distributed.run LAUNCH -m helpsteer.cli ARGS`, one thread per process, the
    process group killed on timeout. Asserts exit 0 and that every rank shut its process group down;
    returns stdout and stderr without progress bars and warnings."""
    import os
    import signal
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", *launch, "-m", "helpsteer.cli", *map(str, args)]
    p = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
    log = "\n".join(x for x in err.splitlines() if x.strip() and "it/s]" not in x and "Warning" not in x and "return func" not in x)
    assert p.returncode == 0, log[-4000:]
    assert "terminate called" not in err  # (a rank that exits with gloo's threads running aborts)
    return out, log


def table(ws: Path, name: str, t: str) -> pl.DataFrame:
    return pl.read_parquet(ws / "datasets" / name / f"{t}.parquet")


def manifest(ws: Path, name: str) -> dict:
    return json.loads((ws / "datasets" / name / "manifest.json").read_text())


def quarantine(ws: Path, name: str) -> list[dict]:
    p = ws / "datasets" / name / "quarantine.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


# layout -> (dataset name, files under the synthetic folder), for synthetic_workspace
LAYOUTS = {
    "pref": ("pref", ("helpsteer2/preference/preference.jsonl.gz",)),
    "hs2": ("hs2", ("helpsteer2/train.jsonl.gz",)),
    "hs2+val": ("hs2", ("helpsteer2/train.jsonl.gz", "helpsteer2/validation.jsonl.gz")),
    "dis": ("dis", ("helpsteer2/disagreements/disagreements.jsonl.gz",)),
    "ls": ("ls", ("label_studio/ratings_export.json",)),
}


def synthetic_workspace(root: Path, seed: int, n_prompts: int, datasets=("pref",)) -> Path:
    """Writes SynthConfig(seed, n_prompts) to ROOT/syn and ingests the named LAYOUTS, in order, into
    the workspace ROOT/ws (each asserted to exit 0); returns the workspace."""
    from helpsteer.synth import SynthConfig, write_synthetic

    syn = root / "syn"
    write_synthetic(SynthConfig(seed=seed, n_prompts=n_prompts), syn)
    ws = root / "ws"
    for layout in datasets:
        name, files = LAYOUTS[layout]
        assert run_cli("ingest", *(syn / f for f in files), "--workspace", ws, "--name", name) == 0
    return ws


def ingest_accounts_for_all(path: Path, n_records: int, *args) -> None:
    """Ingests PATH (with ARGS) as `f` into the workspace beside it: exit 0 with every one of its
    N_RECORDS ingested or quarantined, or exit 2 with no dataset left behind."""
    ws = path.parent / "ws"
    rc = run_cli("ingest", path, "--workspace", ws, "--name", "f", *args)
    assert rc in (0, 2)
    if rc == 0:
        src = manifest(ws, "f")["sources"][0]
        assert src["records"] == n_records == src["ingested"] + src["quarantined"] == src["ingested"] + len(quarantine(ws, "f"))
    else:
        assert not (ws / "datasets" / "f").exists()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    from helpsteer.synth import SynthConfig, write_synthetic

    out = tmp_path_factory.mktemp("synth")
    write_synthetic(SynthConfig(seed=3, n_prompts=120), out)
    return out
