"""Label Studio tasks from a workspace dataset: one task per response (ratings, feedback), per
(response, principle) (principle) or per pair (preference), with the platform's ids in `data`
(`item_id` is what makes re-pushing idempotent)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from helpsteer import store
from helpsteer.errors import UsageError
from helpsteer.ids import stable_hash

from .configs import KINDS


def _messages(context: list[dict]) -> list[dict]:
    return [{"role": t["role"], "content": t["content"]} for t in context]


def build_tasks(workspace: Path, name: str, kind: str) -> list[dict]:
    if kind not in KINDS:
        raise UsageError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    resp = store.load_table(workspace, name, "responses", ["response_id", "prompt_id", "context", "prompt", "response", "domain", "split"])
    by_id = {r["response_id"]: r for r in resp.iter_rows(named=True)}
    tasks: list[dict] = []
    if kind == "preference":
        prefs = store.load_table(workspace, name, "preferences", ["pair_id", "prompt_id", "response_a_id", "response_b_id"])
        pairs = prefs.unique("pair_id", keep="first", maintain_order=True)
        if pairs.height == 0:
            raise UsageError(f"dataset {name!r} has no preference pairs to annotate; run `helpsteer analyze` for pairs derived from ratings, or push --kind ratings")
        for p in pairs.iter_rows(named=True):
            a, b = by_id.get(p["response_a_id"]), by_id.get(p["response_b_id"])
            if a is None or b is None:
                continue
            tasks.append({"data": {"item_id": p["pair_id"], "pair_id": p["pair_id"], "prompt_id": p["prompt_id"], "prompt": a["prompt"],
                                   "messages": _messages(a["context"]), "response_a": a["response"], "response_b": b["response"],
                                   "response_a_id": a["response_id"], "response_b_id": b["response_id"]}})
        return tasks
    if kind == "principle":
        principles = store.load_table(workspace, name, "principles", ["response_id", "principle"]).unique(keep="first", maintain_order=True)
        if principles.height == 0:
            raise UsageError(f"dataset {name!r} has no principles (HelpSteer3 principle rows); ingest some, or push --kind ratings")
        for p in principles.iter_rows(named=True):
            r = by_id.get(p["response_id"])
            if r is None:
                continue
            tasks.append({"data": _response_data(r, stable_hash("principle", r["response_id"], p["principle"])) | {"principle": p["principle"]}})
        return tasks
    for r in by_id.values():
        tasks.append({"data": _response_data(r, r["response_id"])})
    if not tasks:
        raise UsageError(f"dataset {name!r} has no responses")
    return tasks


def _response_data(r: dict, item_id: str) -> dict:
    return {"item_id": item_id, "response_id": r["response_id"], "prompt_id": r["prompt_id"], "prompt": r["prompt"],
            "messages": _messages(r["context"]), "response": r["response"]}


def write_tasks_file(tasks: list[dict], out: Path) -> None:
    import orjson

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(orjson.dumps(tasks, option=orjson.OPT_INDENT_2))
    tmp.replace(out)


__all__ = ["build_tasks", "write_tasks_file", "pl"]
