"""Format readers: one entry per supported source format. Each declares the raw fields it reads
(helpsteer/containers.py type-checks them), how to recognise it (`--format auto`), and a normalizer
that turns a typed chunk into canonical rows (helpsteer/formats/common.Result)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import polars as pl

from ..errors import UsageError
from .common import Result


@dataclass
class Ctx:
    """What a normalizer knows about the source it reads."""

    source: str  # the file's name, stored in every row's `source`
    fmt: str  # the (sub)format name
    split: str | None  # split from the file name, when records carry none
    shared: dict = field(default_factory=dict)  # cross-file state (LLMFAO: pairs -> votes)
    drop_empty: bool = False
    path: Path | None = None  # the file itself, for readers that join a companion file beside it
    warnings: list[str] = field(default_factory=list)  # source-level notes, shown on stderr and kept in the manifest


@dataclass(frozen=True)
class Format:
    name: str  # what --format and the manifest call it
    spec: dict  # raw field -> dtype (helpsteer.schema.JSON for anything)
    required: tuple[str, ...]  # fields whose presence identifies the format
    normalize: Callable[[pl.DataFrame, Ctx], Result]
    probe: Callable[[list[dict]], bool] | None = None  # extra check on sample records
    group: str | None = None  # user-facing name when one --format covers several file kinds
    order: int = 0  # files of a group are read in this order (LLMFAO pairs before votes)
    description: str = ""
    folder_skip: str | None = None  # a folder ingest skips files of this format, with this reason
    conflicts: dict[str, str] = field(default_factory=dict)  # formats it cannot share one ingest with -> why

    @property
    def user_name(self) -> str:
        return self.group or self.name


FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    FORMATS[fmt.name] = fmt
    return fmt


def _load_all() -> None:
    from . import creative, crowd, helpsteer, label_studio, pairs, squality  # noqa: F401  (they register themselves)


def user_formats() -> list[str]:
    _load_all()
    return sorted({f.user_name for f in FORMATS.values()})


def _matches(fmt: Format, sample: list[dict], *, majority: bool) -> bool:
    """The sample has the format's fields and passes its probe. majority: most records carry all
    the fields (else the fields may be spread over the records, as in sparse JSON Lines)."""
    need = set(fmt.required)
    if majority:
        if 2 * sum(need <= rec.keys() for rec in sample) <= len(sample):
            return False
    elif not need <= {k for rec in sample for k in rec}:
        return False
    return fmt.probe is None or _probe_votes(fmt, sample)


def _probe_votes(fmt: Format, sample: list[dict]) -> bool:
    """The probe passes on the sample, or on most of the records that have every field it needs
    (a null or an odd value in one record must not decide the format of the file)."""
    if fmt.probe(sample):
        return True
    voters = [rec for rec in sample if all(rec.get(f) is not None for f in fmt.required)]
    return 2 * sum(bool(fmt.probe([rec])) for rec in voters) > len(voters) > 0


def detect(sample: list[dict], path, wanted: str = "auto") -> Format:
    """The format of a file: the most specific one whose fields match (or the sub-format of
    `wanted` that matches). When none does: exit 2 naming the fields seen, a close format if one
    is, and a ready `--map` line to edit (helpsteer/formats/mapped.py)."""
    _load_all()
    if not sample:
        raise UsageError(f"{path}: no readable record to recognise its format (empty file, or nothing parses as JSON/CSV)")
    cands = [f for f in FORMATS.values() if wanted in ("auto", f.name, f.group)]
    if wanted != "auto" and not cands:
        raise UsageError(f"unknown --format {wanted!r}; choose one of: auto, {', '.join(user_formats())}")
    # vote over the sample: the formats most records match, else those the records match together
    matching = [f for f in cands if _matches(f, sample, majority=True)] or [f for f in cands if _matches(f, sample, majority=False)]
    if matching:
        # most specific wins: most identifying fields, then a probe, then registration order
        return max(matching, key=lambda f: (len(f.required), f.probe is not None))
    if wanted != "auto" and len(cands) == 1:
        # an explicit format whose fields are absent: let its reader quarantine every record
        return cands[0]
    from .mapped import suggest_map

    keys = list(dict.fromkeys(k for rec in sample for k in rec))  # first-seen order, as in the file
    shown = ", ".join(keys[:20]) + (f", ... ({len(keys)} in all)" if len(keys) > 20 else "")
    # a format is "close" when the file has most of its identifying fields (not one shared `id`)
    close = [(f, [r for r in f.required if r not in keys]) for f in cands]
    close = sorted(((f, miss) for f, miss in close if len(f.required) - len(miss) >= max(2, (len(f.required) + 1) // 2)), key=lambda x: len(x[1]))
    near = "".join(f" Closest: {f.user_name} ({'lacks ' + ', '.join(miss) if miss else 'same fields, other values'})." for f, miss in close[:1])
    what = "match no known format" if wanted == "auto" else f"do not look like --format {wanted}"
    raise UsageError(f"{path}: record fields [{shown}] {what}.{near} Map them to a shape (pairs, ratings, rankings, criteria; "
                     f"README \"Ingest\") by editing: {suggest_map(sample)}")
