"""The workspace store: WS/datasets/NAME/{manifest.json, <table>.parquet, quarantine.jsonl}.

Every write goes to a hidden temporary folder beside the dataset and is renamed into place, so an
interrupted command leaves either the old dataset or the new one, never half of either."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

import orjson
import polars as pl

from .errors import UsageError
from .schema import TABLES, empty

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def datasets_root(workspace: Path) -> Path:
    return Path(workspace) / "datasets"


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise UsageError(f"dataset name {name!r}: use letters, digits, '.', '_' or '-' (starting with a letter or digit)")
    return name


def dataset_path(workspace: Path, name: str) -> Path:
    return datasets_root(workspace) / check_name(name)


def exists(workspace: Path, name: str) -> bool:
    return (dataset_path(workspace, name) / "manifest.json").exists()


def require(workspace: Path, name: str) -> Path:
    path = dataset_path(workspace, name)
    if not (path / "manifest.json").exists():
        have = ", ".join(m["name"] for m in list_datasets(workspace)) or "none"
        raise UsageError(f"no dataset {name!r} in workspace {workspace} (datasets: {have}); create it with `helpsteer ingest`")
    return path


def read_manifest(workspace: Path, name: str) -> dict:
    return orjson.loads((require(workspace, name) / "manifest.json").read_bytes())


def list_datasets(workspace: Path) -> list[dict]:
    root = datasets_root(workspace)
    if not root.exists():
        return []
    out = []
    for d in sorted(root.iterdir()):
        if d.name.startswith(".") or not (d / "manifest.json").exists():
            continue
        try:
            out.append(orjson.loads((d / "manifest.json").read_bytes()))
        except orjson.JSONDecodeError:
            continue
    return out


def load_table(workspace: Path, name: str, table: str, columns: list[str] | None = None) -> pl.DataFrame:
    path = require(workspace, name) / f"{table}.parquet"
    if not path.exists():
        df = empty(table)
        return df.select(columns) if columns else df
    return pl.read_parquet(path, columns=columns)


def scan_table(workspace: Path, name: str, table: str) -> pl.LazyFrame:
    path = require(workspace, name) / f"{table}.parquet"
    return pl.scan_parquet(path) if path.exists() else empty(table).lazy()


def new_staging(workspace: Path, name: str) -> Path:
    """A fresh hidden folder beside the datasets, removed again unless committed."""
    root = datasets_root(workspace)
    root.mkdir(parents=True, exist_ok=True)
    _clean_stale(root)
    path = root / f".tmp-{check_name(name)}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def _clean_stale(root: Path) -> None:
    """Remove staging folders left by killed processes (their pid is gone)."""
    for d in root.glob(".tmp-*"):
        try:
            pid = int(d.name.split("-")[-2])
        except (ValueError, IndexError):
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(d, ignore_errors=True)
    for d in root.glob(".trash-*"):
        shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def commit(staging: Path, workspace: Path, name: str) -> Path:
    """Atomically put the staged folder in place of NAME (swapping out an old one)."""
    final = dataset_path(workspace, name)
    if final.exists():
        trash = final.parent / f".trash-{name}-{uuid.uuid4().hex[:8]}"
        os.rename(final, trash)
        os.rename(staging, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(staging, final)
    return final


def delete(workspace: Path, name: str) -> None:
    path = require(workspace, name)
    trash = path.parent / f".trash-{name}-{uuid.uuid4().hex[:8]}"
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=str))
    os.replace(tmp, path)


def write_parquet(df: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    df.write_parquet(tmp)
    os.replace(tmp, path)


def copy_dataset_to(workspace: Path, name: str, staging: Path) -> None:
    """Copy an existing dataset's files into a staging folder (to rewrite some of them)."""
    src = require(workspace, name)
    for p in src.iterdir():
        if p.is_file():
            shutil.copy2(p, staging / p.name)
        elif p.is_dir():
            shutil.copytree(p, staging / p.name)


def table_counts(folder: Path) -> dict[str, int]:
    counts = {}
    for t in TABLES:
        p = folder / f"{t}.parquet"
        counts[t] = pl.scan_parquet(p).select(pl.len()).collect().item() if p.exists() else 0
    return counts
