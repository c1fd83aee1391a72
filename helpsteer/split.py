"""`helpsteer split`: assign train/validation by prompt with no leakage.

The unit is a group of prompts: prompts joined by a pair whose two responses have different
contexts (a few HH-RLHF pairs) fall in one group, so no pair straddles the splits. Groups are
ordered by a seeded hash and the first `eval_fraction` of them go to validation."""

from __future__ import annotations

from hashlib import blake2b
from pathlib import Path

import orjson
import polars as pl

from . import store
from .errors import UsageError


def _groups(prompt_ids: list[str], links: list[tuple[str, str]]) -> dict[str, str]:
    """Union-find over prompt ids; returns prompt_id -> group representative."""
    parent = {p: p for p in prompt_ids}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in links:
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {p: find(p) for p in parent}


def assign(responses: pl.DataFrame, preferences: pl.DataFrame, eval_fraction: float, seed: int) -> pl.DataFrame:
    """responses with `split` set to train/validation by prompt group."""
    if not 0.0 < eval_fraction < 1.0:
        raise UsageError(f"--eval-fraction must be between 0 and 1 (exclusive), got {eval_fraction}")
    rid_to_pid = dict(zip(responses["response_id"].to_list(), responses["prompt_id"].to_list()))
    links = []
    for a, b in preferences.select("response_a_id", "response_b_id").unique().iter_rows():
        pa, pb = rid_to_pid.get(a), rid_to_pid.get(b)
        if pa and pb and pa != pb:
            links.append((pa, pb))
    group = _groups(responses["prompt_id"].unique().to_list(), links)
    reps = sorted(set(group.values()), key=lambda g: blake2b(f"{seed}:{g}".encode(), digest_size=8).digest())
    n_eval = max(1, round(len(reps) * eval_fraction)) if len(reps) > 1 else 0
    eval_groups = set(reps[:n_eval])
    split_of = {p: ("validation" if g in eval_groups else "train") for p, g in group.items()}
    return responses.with_columns(pl.col("prompt_id").replace_strict(split_of, return_dtype=pl.String).alias("split"))


def split_dataset(workspace: Path, name: str, eval_fraction: float = 0.2, seed: int = 0, *, wait: bool = False) -> dict[str, int]:
    store.require(workspace, name)
    with store.writing(workspace, name, wait=wait) as w:  # read and rewrite one version, under the lock
        responses = store.load_table(workspace, name, "responses")
        if responses.height == 0:
            raise UsageError(f"dataset {name!r} has no responses to split")
        prefs = store.load_table(workspace, name, "preferences", ["response_a_id", "response_b_id"])
        responses = assign(responses, prefs, eval_fraction, seed)
        w.copy_base()
        store.write_parquet(responses, w.path / "responses.parquet")
        manifest = orjson.loads((w.base / "manifest.json").read_bytes())
        counts = {str(k): int(v) for k, v in responses.group_by("split").len().sort("split").iter_rows()}
        manifest["splits"] = counts
        manifest["split_config"] = {"by": "prompt", "eval_fraction": eval_fraction, "seed": seed}
        store.write_json(w.path / "manifest.json", manifest)
        w.commit()
    return counts
