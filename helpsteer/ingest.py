"""`helpsteer ingest`: source files -> one validated, canonical workspace dataset.

Streams each file in chunks (memory does not grow with the file), quarantines every record that
cannot be ingested with its source, line and reason, de-duplicates responses by id, and writes
into a staging folder that is renamed into place only when everything succeeded. A folder stands
for the files inside it: those no reader knows are skipped, each with its reason (--strict: exit 2).
A schema no reader knows goes in through a column mapping (helpsteer/formats/mapped.py)."""

from __future__ import annotations

import datetime as _dt
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import polars as pl

from . import store
from .containers import Chunk, SourceState, container_of, file_sha256, iter_chunks, sample_lines, split_from_name
from .errors import UsageError
from .formats import Ctx, Format, detect
from .formats.mapped import Mapping, validate
from .schema import SCHEMA_VERSION, TABLES, conform_table, empty

log = logging.getLogger(__name__)

_SUPPORTED = (".jsonl", ".jsonl.gz", ".ndjson", ".json", ".json.gz", ".csv", ".csv.gz", ".tsv", ".parquet")


@dataclass
class SourceReport:
    path: str
    format: str
    sha256: str
    records: int = 0
    ingested: int = 0
    quarantined: int = 0
    quarantined_parts: int = 0  # quarantine entries for parts of ingested records (one annotation of a task)
    truncated: bool = False
    warnings: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    mapping: dict | None = None  # the --map that read it

    def manifest(self) -> dict:
        d = {k: getattr(self, k) for k in ("path", "format", "sha256", "records", "ingested", "quarantined")}
        if self.mapping:
            d["mapping"] = self.mapping
        if self.quarantined_parts:
            d["quarantined_parts"] = self.quarantined_parts
        if self.truncated:
            d["truncated"] = True
        if self.warnings:
            d["warnings"] = self.warnings
        if self.reasons:
            d["quarantine_reasons"] = dict(sorted(self.reasons.items(), key=lambda kv: -kv[1])[:20])
        return d


@dataclass
class IngestReport:
    name: str
    path: Path
    sources: list[SourceReport]
    tables: dict[str, int]
    skipped: list[str] = field(default_factory=list)  # already in the dataset (same sha256)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): a folder's files no reader takes


def expand_paths(paths: list[Path]) -> list[tuple[Path, bool]]:
    """(file, came from a folder) to read: a plain folder stands for every file inside it (hidden
    ones aside); the folder's files that no reader takes are skipped later, with their reason."""
    out: list[tuple[Path, bool]] = []
    for p in paths:
        p = Path(p)
        if p.is_dir() and container_of_dir_is_plain(p):
            found = sorted(f for f in p.rglob("*") if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not found:
                raise UsageError(f"{p}: empty folder (no files to ingest)")
            out.extend((f, True) for f in found)
        else:
            out.append((p, False))
    return out


class _Skip(Exception):
    """A folder's file that no reader takes: skipped with this reason."""


def _recognise(f: Path, in_folder: bool, fmt: str, mapping: Mapping | None) -> Format:
    """The reader of one file (its --map, or its detected format); _Skip for a folder's file that
    no reader takes, UsageError (exit 2) for a file named on the command line."""
    if in_folder and not f.name.lower().endswith(_SUPPORTED):
        raise _Skip(f"not a data file ({''.join(f.suffixes[-1:]) or 'no extension'})")
    try:
        container_of(f)
        if mapping is not None:
            validate(mapping, sample_lines(f), f)
            return mapping.format()
        chosen = detect([rec for _, rec in sample_lines(f)], f, fmt)
    except (UsageError, OSError, ValueError, pl.exceptions.PolarsError) as e:  # ValueError: e.g. a file that is not UTF-8
        if not in_folder:
            raise
        text = str(e) if isinstance(e, UsageError) else f"unreadable ({type(e).__name__}: {e})"
        raise _Skip(text[len(f"{f}: "):] if text.startswith(f"{f}: ") else text) from None
    if in_folder and chosen.folder_skip:
        raise _Skip(chosen.folder_skip)
    return chosen


def container_of_dir_is_plain(p: Path) -> bool:
    return not any((p / n).exists() for n in ("dataset_info.json", "dataset_dict.json", "state.json"))


class _TableSink:
    """Collects chunk frames per table and appends them to one parquet file per table (a pyarrow
    ParquetWriter, zstd, one row group per flush) when a buffer passes FLUSH_ROWS. One pass over
    the rows, and memory stays bounded by the buffer, whatever the file size."""

    FLUSH_ROWS = 1_000_000

    def __init__(self, folder: Path):
        self.folder = folder
        self.buffers: dict[str, list[pl.DataFrame]] = {t: [] for t in TABLES}
        self.buffered = {t: 0 for t in TABLES}
        self.writers: dict[str, object] = {}
        self.counts = {t: 0 for t in TABLES}

    def write(self, table: str, df: pl.DataFrame) -> None:
        if df.height == 0:
            return
        self.buffers[table].append(df)
        self.buffered[table] += df.height
        self.counts[table] += df.height
        if self.buffered[table] >= self.FLUSH_ROWS:
            self._flush(table)

    def _flush(self, table: str) -> None:
        import pyarrow.parquet as pq

        if not self.buffers[table]:
            return
        df = pl.concat(self.buffers[table], how="vertical_relaxed")
        self.buffers[table], self.buffered[table] = [], 0
        if set(df.columns) == set(TABLES[table]):
            df = conform_table(table, df)  # the canonical dtypes: a chunk of nulls is not a Null column
        arrow = df.to_arrow()
        writer = self.writers.get(table)
        if writer is None:
            writer = self.writers[table] = pq.ParquetWriter(self.folder / f"{table}.parquet", arrow.schema, compression="zstd")
        elif arrow.schema != writer.schema:
            arrow = arrow.cast(writer.schema)
        writer.write_table(arrow)

    def close(self) -> None:
        for t in TABLES:
            self._flush(t)
            writer = self.writers.pop(t, None)
            if writer is not None:
                writer.close()
            else:
                empty(t).write_parquet(self.folder / f"{t}.parquet")


def ingest(
    paths: list[Path],
    workspace: Path,
    name: str,
    *,
    fmt: str = "auto",
    strict: bool = False,
    mode: str | None = None,
    drop_empty: bool = False,
    shared: dict | None = None,
    mapping: Mapping | None = None,
    source_names: dict[Path, str] | None = None,
    wait: bool = False,
) -> IngestReport:
    """Ingest files into WS/datasets/NAME. mode: None (must not exist), 'append' or 'replace'.
    mapping: a parsed --map (helpsteer.formats.mapped.parse_map) that reads every file.
    source_names: what the manifest and quarantine call a file instead of its path (annotate pull
    reads a temporary file and records the project's URL, so two pulls give the same dataset).
    wait: queue behind another process writing NAME instead of exiting 2 at once."""
    workspace = Path(workspace)
    store.check_name(name)
    files = expand_paths(paths)
    if not files:
        raise UsageError("no input files given")
    recognised, skipped_files = _recognise_all(files, fmt, mapping, strict=strict)  # before any write
    with store.writing(workspace, name, wait=wait) as w:  # the lock: a second writer waits (--wait) or exits 2
        exists = w.base is not None
        if exists and mode is None:
            raise UsageError(f"dataset {name!r} already exists in {workspace}; pass --append to add sources or --replace to swap it")
        old_manifest = orjson.loads((w.base / "manifest.json").read_bytes()) if exists and mode == "append" else None
        report = _ingest_locked(recognised, skipped_files, w, workspace, name, strict=strict, drop_empty=drop_empty, shared=shared,
                                mapping=mapping, old_manifest=old_manifest, source_names=source_names)
        w.commit()
    report.path = store.dataset_path(workspace, name)
    return report


def _recognise_all(files, fmt: str, mapping: Mapping | None, *, strict: bool) -> tuple[list[tuple[Path, Format]], list[tuple[str, str]]]:
    """The reader of every file, and the folder files no reader takes (path, reason)."""
    recognised: list[tuple[Path, Format]] = []
    skipped_files: list[tuple[str, str]] = []
    for f, in_folder in files:
        try:
            chosen = _recognise(f, in_folder, fmt, mapping)
        except _Skip as why:
            if strict:
                raise UsageError(f"{f}: {why} (--strict: every file of a folder must be ingestable; nothing was written)") from None
            skipped_files.append((str(f), str(why)))
            log.info(f"skipped {f}: {why}")
            continue
        how = " (--map)" if mapping is not None else " (auto-detected)" if fmt == "auto" else ""
        log.info(f"{f}: format {chosen.name}{how}")
        recognised.append((f, chosen))
    return recognised, skipped_files


def _ingest_locked(recognised, skipped_files, w: store.Writing, workspace: Path, name: str, *, strict: bool, drop_empty: bool, shared: dict | None,
                   mapping: Mapping | None, old_manifest: dict | None, source_names: dict | None) -> IngestReport:
    known_sha = {s["sha256"] for s in (old_manifest or {}).get("sources", [])}
    plan: list[tuple[Path, Format, str]] = []
    before: dict[Path, tuple[int, int, str]] = {}  # size, mtime and sha256 before reading: compared after
    skipped: list[str] = []
    for f, chosen in recognised:
        st = f.stat()
        sha = file_sha256(f)
        if sha in known_sha:
            skipped.append(str(f))
            log.info(f"{f}: already in {name!r} (same sha256), skipped")
            continue
        before[f] = (st.st_size, st.st_mtime_ns, sha)
        plan.append((f, chosen, sha))
    if not plan and skipped_files:
        raise UsageError(f"nothing to ingest: no reader takes any of the {len(skipped_files)} files given (first: {skipped_files[0][0]}: {skipped_files[0][1]})")
    for f, chosen, _ in plan:
        clash = next(((g, c) for g, c, _ in plan if c.name in chosen.conflicts), None)
        if clash:
            raise UsageError(f"{f} ({chosen.name}) cannot be ingested together with {clash[0]} ({clash[1].name}): {chosen.conflicts[clash[1].name]}")
    plan.sort(key=lambda x: x[1].order)  # e.g. LLMFAO pairs before their votes
    report = _run(plan, w.path, name, strict=strict, drop_empty=drop_empty, shared=shared or {}, workspace=workspace,
                  old=old_manifest, mapping=mapping, skipped_files=skipped_files, source_names=source_names)
    report.skipped = skipped
    report.skipped_files = skipped_files
    store.fault_point("read")
    for f, (size, mtime, sha) in before.items():
        _check_unchanged(f, size, mtime, sha)
    if old_manifest is None and sum(s.ingested for s in report.sources) == 0:
        first = next((s for s in report.sources if s.reasons), None)
        why = f"; most common reason: {max(first.reasons, key=first.reasons.get)}" if first else ""
        raise UsageError(f"nothing ingestable in {', '.join(str(f) for f, _, _ in plan) or 'the given files'}{why}")
    return report


def _check_unchanged(f: Path, size: int, mtime: int, sha: str) -> None:
    """A source must be the same file after reading as before (size, mtime and sha256): else what was
    read matches neither version, and the recorded sha256 would make --append skip the real one."""
    try:
        st = f.stat()
        now = (st.st_size, st.st_mtime_ns, file_sha256(f) if (st.st_size, st.st_mtime_ns) == (size, mtime) else None)
    except OSError as e:
        raise UsageError(f"{f}: disappeared while it was being read ({e.strerror}); nothing was written") from None
    if now != (size, mtime, sha):
        what = (f"size {size} -> {now[0]} bytes" if now[0] != size else "modification time changed" if now[1] != mtime
                else "same size and time, different sha256")
        raise UsageError(f"{f}: changed while it was being read ({what}); nothing was written, ingest it again once it is complete")


def _run(plan, staging: Path, name: str, *, strict: bool, drop_empty: bool, shared: dict, workspace: Path, old: dict | None,
         mapping: Mapping | None = None, skipped_files: list | None = None, source_names: dict | None = None) -> IngestReport:
    sink = _TableSink(staging)
    seen_responses: set[str] = set()
    if old is not None:
        seen_responses = set(store.load_table(workspace, name, "responses", ["response_id"])["response_id"].to_list())
    quarantine = open(staging / "quarantine.jsonl", "wb")
    reports: list[SourceReport] = []
    try:
        for path, fmt, sha in plan:
            rep = SourceReport(path=(source_names or {}).get(path, str(path)), format=fmt.name, sha256=sha, mapping=mapping.manifest() if mapping is not None else None)
            reports.append(rep)
            state = SourceState(path)
            ctx = Ctx(source=path.name, fmt=fmt.user_name, split=split_from_name(path), shared=shared, drop_empty=drop_empty, path=path)
            seen_keys: dict[int, int] = {}
            bar = _progress(path)
            for chunk in iter_chunks(path, fmt.spec, state):
                n_before = rep.quarantined
                if strict:
                    _strict_chunk(chunk, fmt, ctx, rep, sink, seen_keys, seen_responses, drop_empty=drop_empty)
                else:
                    _ingest_chunk(chunk, fmt, ctx, rep, sink, quarantine, seen_keys, seen_responses, strict=False, drop_empty=drop_empty)
                if bar is not None:
                    bar.update(chunk.frame.height + len(chunk.bad))
                    bar.set_postfix(quarantined=rep.quarantined) if rep.quarantined != n_before else None
            if bar is not None:
                bar.close()
            rep.records = state.records
            rep.ingested = rep.records - rep.quarantined
            rep.truncated = state.truncated
            rep.warnings = state.warnings + ctx.warnings
            if strict and state.truncated:
                raise UsageError(f"{path}: {state.warnings[0]} (--strict)")
    finally:
        quarantine.close()
        sink.close()
    if old is not None:
        _merge_old(workspace, name, staging)
    tables = store.table_counts(staging)
    sources = ([s for s in old["sources"]] if old else []) + [r.manifest() for r in reports]
    fmts = sorted({s["format"] for s in sources})
    manifest = {
        "name": name,
        "format": fmts[0] if len(fmts) == 1 else fmts,
        "schema_version": SCHEMA_VERSION,
        "created": (old or {}).get("created") or _now(),
        "updated": _now(),
        "sources": sources,
        "tables": tables,
        "splits": _split_counts(staging),
    }
    scales = {**(old or {}).get("scales", {}), **shared.get("scales", {})}
    if scales:  # attribute -> [lo, hi]: the source's own rating scale, where the reader knows it
        manifest["scales"] = dict(sorted(scales.items()))
    if skipped_files:
        manifest["skipped"] = [{"path": p, "reason": r} for p, r in skipped_files]
    store.write_json(staging / "manifest.json", manifest)
    return IngestReport(name=name, path=staging, sources=reports, tables=tables)


def _strict_chunk(chunk: Chunk, fmt: Format, ctx: Ctx, rep: SourceReport, sink: _TableSink, seen_keys: dict, seen_responses: set,
                  *, drop_empty: bool) -> None:
    """--strict: stop at the chunk's first bad record in file order, whichever check found it (a
    structural error, a duplicate, a rating out of range, ...), not at the first check that ran."""
    import io

    found = io.BytesIO()
    probe = SourceReport(path=rep.path, format=rep.format, sha256=rep.sha256)
    _ingest_chunk(chunk, fmt, ctx, probe, sink, found, seen_keys, seen_responses, strict=False, drop_empty=drop_empty)
    entries = [orjson.loads(line) for line in found.getvalue().splitlines()]
    if entries:
        first = min(entries, key=lambda e: e["line"])
        raise UsageError(f"{rep.path}:{first['line']}: {first['reason']} (--strict: nothing was written)")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _split_counts(folder: Path) -> dict:
    df = pl.scan_parquet(folder / "responses.parquet").group_by("split").len().collect()
    return {("unsplit" if r["split"] is None else str(r["split"])): int(r["len"]) for r in df.iter_rows(named=True)}


def _progress(path: Path):
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(desc=path.name, unit="rec", file=sys.stderr, leave=False)


def _quarantine(fh, rep: SourceReport, line: int, reason: str, record, strict: bool, part: bool = False) -> None:
    """One quarantine.jsonl entry; part=True: a part of a record whose other rows were ingested
    (the entry says `"part": true` and counts in quarantined_parts, not in quarantined)."""
    if strict:
        raise UsageError(f"{rep.path}:{line}: {reason} (--strict: nothing was written)")
    entry = {"source": rep.path, "line": line, "reason": reason, "record": record, **({"part": True} if part else {})}
    fh.write(orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS))
    fh.write(b"\n")
    if part:
        rep.quarantined_parts += 1
    else:
        rep.quarantined += 1
    key = reason.split(", got")[0].split(" of line")[0][:100]
    rep.reasons[key] = rep.reasons.get(key, 0) + 1


def _ingest_chunk(chunk: Chunk, fmt: Format, ctx: Ctx, rep: SourceReport, sink: _TableSink, qfh, seen_keys: dict, seen_responses: set,
                  *, strict: bool, drop_empty: bool) -> None:
    bad_lines: set[int] = set()
    for b in chunk.bad:
        _quarantine(qfh, rep, b.line, b.reason, b.record, strict)
        bad_lines.add(b.line)
    frame = chunk.frame
    # exact duplicate records (same bytes / same content) within a source
    dup_lines: list[int] = []
    for line, key in zip(frame["_line"].to_list(), frame["_key"].to_list()):
        first = seen_keys.setdefault(key, line)
        if first != line:
            dup_lines.append(line)
            _quarantine(qfh, rep, line, f"exact duplicate of line {first}", chunk.record(line), strict)
    if dup_lines:
        frame = frame.filter(~pl.col("_line").is_in(dup_lines))
        bad_lines.update(dup_lines)
    if frame.height == 0:
        return
    res = fmt.normalize(frame.drop("_key"), ctx)
    rejected: list[int] = []
    for line, reason in res.rejects.sort("_line").iter_rows():
        if line in bad_lines:
            continue
        bad_lines.add(line)
        rejected.append(line)
        _quarantine(qfh, rep, line, reason, chunk.record(line), strict)
    if drop_empty and "responses" in res.tables:
        empties = res.tables["responses"].filter(pl.col("flags").list.contains("empty_response"))["_line"].unique().sort().to_list()
        for line in empties:
            if line not in bad_lines:
                bad_lines.add(line)
                rejected.append(line)
                _quarantine(qfh, rep, line, "empty response (--drop-empty)", chunk.record(line), strict)
    for line, reason, part in sorted(res.parts, key=lambda p: p[0]):  # parts of records kept: their other rows are ingested
        if line not in bad_lines:
            _quarantine(qfh, rep, line, reason, part, strict, part=True)
    for table, df in res.tables.items():
        if rejected:
            df = df.filter(~pl.col("_line").is_in(rejected))
        if table == "responses":
            df = df.unique(subset="response_id", keep="first", maintain_order=True)
            ids = df["response_id"].to_list()
            if seen_responses:
                keep = [r not in seen_responses for r in ids]
                df = df.filter(pl.Series(keep, dtype=pl.Boolean))
                ids = [r for r, k in zip(ids, keep) if k]
            seen_responses.update(ids)
        sink.write(table, df.drop("_line"))


def _merge_old(workspace: Path, name: str, staging: Path) -> None:
    """--append: existing rows first, new rows after, exact duplicate rows dropped."""
    old_dir = store.require(workspace, name)
    for t in TABLES:
        new = pl.read_parquet(staging / f"{t}.parquet")
        old_p = old_dir / f"{t}.parquet"
        old = conform_table(t, pl.read_parquet(old_p)) if old_p.exists() else empty(t)  # older schema versions lack newer columns
        both = pl.concat([old, new], how="vertical_relaxed")
        key = ["response_id"] if t == "responses" else [c for c, dt in both.schema.items() if not isinstance(dt, (pl.List, pl.Struct))]
        both = both.unique(subset=key, keep="first", maintain_order=True)
        store.write_parquet(both, staging / f"{t}.parquet")
    q_old = old_dir / "quarantine.jsonl"
    if q_old.exists():
        new_q = (staging / "quarantine.jsonl").read_bytes()
        (staging / "quarantine.jsonl").write_bytes(q_old.read_bytes() + new_q)
