"""The dashboard's only data module: every load from the workspace goes through here, cached
(`st.cache_data` keyed on the file's modification time, so a re-run analysis shows up), and
aggregated with polars before anything is plotted. Pages only render."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import streamlit as st

from helpsteer import store


def workspace() -> Path | None:
    ws = os.environ.get("HELPSTEER_WORKSPACE")
    return Path(ws) if ws else None


def _folder(name: str, ws: Path | None = None) -> Path:
    """The folder of the version of NAME this run reads (helpsteer.store pins it, so a page never
    mixes two versions while an ingest commits); its path names the version, so caches keyed on it
    see a new one."""
    ws = ws or workspace()
    return store.current(ws, name) or store.dataset_path(ws, name)


def refresh() -> None:
    """Called at the start of each run of the app: read the newest version of every dataset."""
    store.refresh()


def _mtime(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


@st.cache_data(show_spinner=False)
def _datasets(ws: str, stamp: float) -> list[dict]:
    return store.list_datasets(Path(ws))


def datasets() -> list[dict]:
    ws = workspace()
    if ws is None or not (ws / "datasets").exists():
        return []
    root = ws / "datasets"
    stamp = max([_mtime(root)] + [_mtime(_folder(n, ws) / "manifest.json") for n in store.names(ws)])
    return _datasets(str(ws), stamp)


def dataset_names() -> list[str]:
    return [d["name"] for d in datasets()]


@st.cache_data(show_spinner=False)
def _table(path: str, stamp: float, columns: tuple | None) -> pl.DataFrame:
    return pl.read_parquet(path, columns=list(columns) if columns else None)


def table(name: str, tbl: str, columns: list[str] | None = None) -> pl.DataFrame:
    p = _folder(name) / f"{tbl}.parquet"
    if not p.exists():
        return pl.DataFrame()
    if columns:
        have = set(pl.read_parquet_schema(p))
        columns = [c for c in columns if c in have]
    return _table(str(p), _mtime(p), tuple(columns) if columns else None)


@st.cache_data(show_spinner=False)
def _pair_labels(ws: str, name: str, stamp: float) -> pl.DataFrame:
    from helpsteer.labels import pair_labels

    return pair_labels(Path(ws), name)


def pair_labels(name: str) -> pl.DataFrame:
    """One row per pair with its label (helpsteer.labels.pair_labels: strength < 0 = A chosen)."""
    p = _folder(name) / "preferences.parquet"
    if not p.exists():
        return pl.DataFrame()
    return _pair_labels(str(workspace()), name, _mtime(p))


def manifest(name: str) -> dict:
    return json.loads((_folder(name) / "manifest.json").read_text())


@st.cache_data(show_spinner=False)
def _quarantine(path: str, stamp: float) -> pl.DataFrame:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            rows.append({"source": r.get("source"), "line": r.get("line"), "reason": r.get("reason"), "record": json.dumps(r.get("record"))[:400]})
    return pl.DataFrame(rows, schema={"source": pl.Utf8, "line": pl.Int64, "reason": pl.Utf8, "record": pl.Utf8})


def quarantine(name: str) -> pl.DataFrame:
    p = _folder(name) / "quarantine.jsonl"
    if not p.exists():
        return pl.DataFrame(schema={"source": pl.Utf8, "line": pl.Int64, "reason": pl.Utf8, "record": pl.Utf8})
    return _quarantine(str(p), _mtime(p))


def analysis_dir(name: str) -> Path:
    return _folder(name) / "analysis"


def analysis_json(name: str) -> dict | None:
    p = analysis_dir(name) / "agreement.json"
    return json.loads(p.read_text()) if p.exists() else None


def analysis_table(name: str, tbl: str) -> pl.DataFrame | None:
    p = analysis_dir(name) / f"{tbl}.parquet"
    return _table(str(p), _mtime(p), None) if p.exists() else None


def _run_files():
    """rm_training.runs, the run directory's owner (imported on first use: importing rm_training loads torch)."""
    from rm_training import runs as run_files

    return run_files


def runs() -> list[Path]:
    """The runs under WS/runs/ (rm_training.runs: folders holding a config.json)."""
    run_files = _run_files()
    ws = workspace()
    return run_files.list_runs(ws) if ws else []


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def run_config(run: Path) -> dict:
    """A run's run_config.json ({"config": ..., "run": ...}), {} when missing or unreadable."""
    run_files = _run_files()
    return read_json(run / run_files.RUN_CONFIG) or {}


def model_config(run: Path) -> dict:
    """A run's Hugging Face config.json (objective, reward_attributes...), {} when missing or unreadable."""
    run_files = _run_files()
    return read_json(run / run_files.CONFIG) or {}


@st.cache_data(show_spinner=False)
def _metrics(run: str, stamp: float) -> pl.DataFrame:
    run_files = _run_files()
    rows = [r for r in run_files.read_metrics(Path(run)) if "loss" in r or "mae" in r]
    return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()


def metrics(run: Path) -> pl.DataFrame:
    run_files = _run_files()
    p = run_files.metrics_path(run)
    return _metrics(str(run), _mtime(p)) if p.exists() else pl.DataFrame()


def evaluations(run: Path) -> dict[str, Path]:
    """A run's evaluations, one per dataset (rm_training.runs.evaluations)."""
    run_files = _run_files()
    return run_files.evaluations(run)


def eval_detail(path: Path, kind: str) -> pl.DataFrame | None:
    """The per-pair or per-response detail written beside an evaluation file (<stem>_<kind>.parquet)."""
    run_files = _run_files()
    p = run_files.eval_detail_path(path, kind)
    return _table(str(p), _mtime(p), None) if p.exists() else None


def attacks() -> list[Path]:
    """The attacks under WS/attacks/ (folders holding an attack.json)."""
    run_files = _run_files()
    ws = workspace()
    return run_files.list_attacks(ws) if ws else []


def attack(path: Path) -> dict:
    """An attack's attack.json, {} when missing or unreadable."""
    run_files = _run_files()
    return run_files.read_attack(path)


@st.cache_resource(show_spinner="loading the model...")
def scorer(path: str):
    from rm_training.scoring import Scorer

    return Scorer(path)


def missing(what: str, command: str) -> None:
    """The message a page shows when its data is not there yet: what to run."""
    st.info(f"{what}\n\nRun:\n```\n{command}\n```")


def pick_one(items: list, label: str, key: str, what: str, command: str):
    """A page's selector over `items` (paths, shown by name); with none, the what-to-run message, and
    the page stops there."""
    if not items:
        missing(what, command)
        st.stop()
    name = st.selectbox(label, [i.name for i in items], key=key)
    return next(i for i in items if i.name == name)


def ws_arg() -> str:
    return str(workspace()) if workspace() else "WS"


@st.cache_data(show_spinner=False)
def _has_annotator_ids(ws: str, name: str, stamp: float) -> bool:
    """Whether a dataset's ratings or votes carry real annotator ids (not null = aggregated, not
    anon:<item>:<k> = votes kept without who cast them)."""
    for tbl in ("ratings", "preferences"):
        p = _folder(name, Path(ws)) / f"{tbl}.parquet"
        if p.exists() and "annotator_id" in pl.read_parquet_schema(p):
            a = pl.col("annotator_id")
            ids = pl.scan_parquet(p).filter(a.is_not_null() & ~a.str.starts_with("anon:")).select(pl.len())
            if ids.collect().item():
                return True
    return False


def has_annotator_ids(name: str) -> bool:
    ws = workspace()
    return _has_annotator_ids(str(ws), name, _mtime(_folder(name, ws) / "manifest.json"))


def pick_dataset(label: str = "Dataset", need: str | None = None, prefer_annotators: bool = False) -> str | None:
    """A sidebar choice of dataset; `need`: only those whose analysis output exists and has
    content; `prefer_annotators`: those with annotator ids first, so the page opens on one."""
    names = dataset_names()
    if need:
        def has(n):
            p = analysis_dir(n) / need
            if not p.exists():
                return False
            return p.suffix != ".parquet" or pl.scan_parquet(p).select(pl.len()).collect().item() > 0
        names = [n for n in names if has(n)]
    if not names:
        return None
    if prefer_annotators:
        names = sorted(names, key=lambda n: not has_annotator_ids(n))  # stable: otherwise in listing order
    return st.sidebar.selectbox(label, names, key=f"ds-{label}-{need}")


def format_name(fmt) -> str:
    """A manifest's `format`: one name, or a list (a dataset of several sources: llmfao's pairs + votes)."""
    if isinstance(fmt, (list, tuple)):
        return ", ".join(dict.fromkeys(map(str, fmt)))
    return "" if fmt is None else str(fmt)


def bar_or_text(df: pl.DataFrame, x: str, y: str, title: str, **kwargs) -> None:
    """A bar chart, or one line of text when there is a single category (a chart of one bar says less)."""
    import plotly.express as px

    if df.height == 0:
        return
    if df.height == 1:
        r = df.row(0, named=True)
        extra = "".join(f", {k} {r[k]}" for k in kwargs.get("hover_data", []) if k in r)
        value = r[y]
        st.write(f"**{title}**: {r[x]}: {value:.3f}{extra}" if isinstance(value, float) else f"**{title}**: {r[x]}: {value}{extra}")
        return
    st.plotly_chart(px.bar(df.to_pandas(), x=x, y=y, title=title, **kwargs), width="stretch")
