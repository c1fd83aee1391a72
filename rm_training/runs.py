"""The run directory's one owner: where runs and attacks live (WS/runs/, WS/attacks/, a default name
numbered -2, -3... when taken), whether a folder is a run, and the files a run holds beside its Hugging
Face checkpoint (run_config.json, metrics.jsonl, eval.json and eval/<dataset>.json, attack.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from helpsteer import store

CONFIG = "config.json"  # the Hugging Face model config: its presence makes a folder a run
WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"  # written last of the tokenizer files: its presence means they are complete
RUN_CONFIG = "run_config.json"  # {"config": resolved training config, "run": data, versions, seed, commit}
METRICS = "metrics.jsonl"  # one JSON object per Trainer log line
EVAL = "eval.json"  # the latest evaluation (a copy of eval/<dataset>.json)
EVAL_DIR = "eval"  # one evaluation per dataset: eval/<dataset>.json (+ <dataset>_<detail>.parquet)
MODEL_CARD = "README.md"
ATTACK = "attack.json"  # WS/attacks/NAME/attack.json: rounds and examples of `helpsteer attack`


# --- where runs and attacks live --------------------------------------------------------------

def numbered(base: Path, taken: Callable[[Path], bool]) -> Path:
    """base, else base-2, base-3, ...: the first that is not `taken` (the default names of runs and attacks)."""
    k, cand = 1, base
    while taken(cand):
        k += 1
        cand = Path(f"{base}-{k}")
    return cand


def run_path(workspace: Path, name: str, objective: str, out: str | None) -> Path:
    """--out, a bare name under WS/runs/, or WS/runs/<name>-<objective>[-2, -3, ...]. An unfinished
    run (checkpoints, no complete model) at the default path is resumed rather than shadowed."""
    runs = Path(workspace) / "runs"
    if out:
        p = Path(out)
        return p if (p.is_absolute() or len(p.parts) > 1) else runs / p
    return numbered(runs / f"{name}-{objective}", lambda p: p.exists() and finished(p))


def attack_path(workspace: Path, name: str, out: Path | None = None) -> Path:
    """--out, else WS/attacks/<name>[-2, -3, ...]: the first without an attack.json."""
    return Path(out) if out else numbered(Path(workspace) / "attacks" / name, lambda p: (p / ATTACK).exists())


def _homes(root: Path, marker: str) -> list[Path]:
    if not root.exists():
        return []
    return sorted(p for p in root.iterdir() if (p / marker).exists())


def list_runs(workspace: Path) -> list[Path]:
    """The runs under WS/runs/ (folders holding a config.json), sorted by name."""
    return _homes(Path(workspace) / "runs", CONFIG)


def list_attacks(workspace: Path) -> list[Path]:
    """The attacks under WS/attacks/ (folders holding an attack.json), sorted by name."""
    return _homes(Path(workspace) / "attacks", ATTACK)


# --- what a run is ----------------------------------------------------------------------------

def is_run(path: str | Path) -> bool:
    """Whether `path` is a run directory: a Hugging Face checkpoint folder with its config.json."""
    return (Path(path) / CONFIG).exists()


def not_a_run(path: str | Path, flag: str | None = None) -> str:
    """The one-line reason a folder is refused as a model: `--model RUN: not a run directory ...` when
    it came from a flag, `RUN is not a run directory ...` otherwise."""
    head = f"{flag} {path}: not" if flag else f"{path} is not"
    return f"{head} a run directory (no {CONFIG}); train one with `helpsteer train`"


def finished(run: Path) -> bool:
    """Whether a run was saved to the end: its weights are whole and its records (run_config.json,
    written after them) are there. A process killed while saving the final model leaves neither."""
    return (Path(run) / RUN_CONFIG).is_file() and safetensors_damage(Path(run) / WEIGHTS) is None


def safetensors_damage(path: Path) -> str | None:
    """Why a .safetensors file cannot be loaded (missing, header cut or unparsable, data shorter
    than the header says), None when it is whole. Reads the header only."""
    import struct

    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{path.name} is cut short ({size} bytes)"
            (n,) = struct.unpack("<Q", head)
            if 8 + n > size:
                return f"{path.name} is cut short (header of {n} bytes, file of {size})"
            header = json.loads(f.read(n))
    except FileNotFoundError:
        return f"no {path.name}"
    except (OSError, ValueError) as e:
        return f"{path.name} has no readable header ({e})"
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__" and isinstance(t, dict) and "data_offsets" in t]
    if 8 + n + max(ends, default=0) > size:
        return f"{path.name} is cut short ({size} of {8 + n + max(ends)} bytes)"
    return None


# --- the run's records ------------------------------------------------------------------------

def read_json(path: str | Path) -> dict | None:
    """A JSON file, None when it is missing or does not parse (for readers that show what is there)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_run_config(run: str | Path) -> dict:
    """RUN/run_config.json: {} when the run has none; one that does not parse raises json's own
    JSONDecodeError (`Expecting value: line 1 column 1 (char 0)`), as it always has."""
    rc = Path(run) / RUN_CONFIG
    return json.loads(rc.read_text()) if rc.exists() else {}


def training_config(run: str | Path) -> dict:
    """The resolved training config a run was trained with ({} when it has no run_config.json)."""
    return read_run_config(run).get("config", {})


def config_field(run: str | Path | None, key: str):
    """A field of a run's resolved config, None when the run, its run_config.json or the field is
    absent, or the file does not parse (lenient: for defaults taken from an earlier run)."""
    if not run:
        return None
    try:
        return training_config(run).get(key)
    except ValueError:
        return None


def write_run_config(run: Path, config: dict, info: dict) -> None:
    store.write_json(Path(run) / RUN_CONFIG, {"config": config, "run": info})


def metrics_path(run: Path) -> Path:
    return Path(run) / METRICS


def read_metrics(run: Path) -> list[dict]:
    """metrics.jsonl's lines as dicts ([] when absent); a line that does not parse (a write cut short) is skipped."""
    p = metrics_path(run)
    if not p.exists():
        return []
    rows = []
    for line in p.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def eval_targets(run: Path, dataset: str) -> tuple[Path, Path]:
    """Where `helpsteer eval` writes: RUN/eval/<dataset>.json and RUN/eval.json (the latest)."""
    return Path(run) / EVAL_DIR / f"{dataset}.json", Path(run) / EVAL


def evaluations(run: Path) -> dict[str, Path]:
    """A run's evaluations, one per dataset: {dataset: RUN/eval/<dataset>.json}; a run evaluated
    before per-dataset files existed has only RUN/eval.json, listed under its own dataset name."""
    run = Path(run)
    out = {}
    folder = run / EVAL_DIR
    if folder.is_dir():
        for p in sorted(folder.glob("*.json")):
            ev = read_json(p) or {}
            out[str(ev.get("dataset") or p.stem)] = p
    latest = run / EVAL
    if latest.exists() and not out:
        ev = read_json(latest) or {}
        out[str(ev.get("dataset") or "unknown dataset")] = latest
    return out


def eval_detail_path(path: Path, kind: str) -> Path:
    """The per-pair or per-response detail written beside an evaluation file (<stem>_<kind>.parquet)."""
    return Path(path).with_name(f"{Path(path).stem}_{kind}.parquet")


def write_attack(out: Path, result: dict) -> None:
    store.write_json(Path(out) / ATTACK, result)


def read_attack(attack: Path) -> dict:
    """An attack folder's attack.json, {} when missing or unreadable."""
    return read_json(Path(attack) / ATTACK) or {}

