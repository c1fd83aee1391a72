"""The `--principles_file` format: JSON Lines of principle/label rows a user writes,
{"response_id" | ("prompt" or "messages") + "response", "principle", "label"}."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson

from ..errors import UsageError
from ..ids import response_id as rid_of
from ..labels import yes_no


def _label(v, where: str) -> float:
    y = yes_no(v)
    if y is None:
        raise UsageError(f"{where}: field 'label': expected Yes/No, true/false or 1/0, got {v!r}")
    return y


def read_principles_file(path: Path) -> Iterator[tuple[str, str, float]]:
    """(response_id, principle, label) per non-blank line; a bad line is a UsageError naming its
    file, line and field."""
    if not path.exists():
        raise UsageError(f"--principles_file {path}: no such file")
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{i}"
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise UsageError(f"{where}: not valid JSON ({exc})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("principle"), str) or not rec["principle"].strip():
            raise UsageError(f"{where}: field 'principle': expected a non-empty string")
        label = _label(rec.get("label"), where)
        rid = rec.get("response_id")
        if rid is None:
            if not isinstance(rec.get("response"), str):
                raise UsageError(f"{where}: give 'response_id', or 'response' with 'prompt' or 'messages'")
            ctx = rec.get("messages") or [{"role": "user", "content": rec.get("prompt", "")}]
            rid = rid_of(ctx, rec["response"])
        yield rid, rec["principle"], label
