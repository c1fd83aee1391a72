"""Containers: any supported container (.jsonl[.gz], .json array, .csv, .parquet, a
`datasets.save_to_disk` directory) -> typed chunks of raw records, each with its 1-based line.

Structural problems (undecodable bytes, invalid JSON, wrong types, a truncated gzip) become
`BadRecord`s here; meaning-level checks belong to the format readers in helpsteer/formats/.
JSON Lines take a fast path: polars parses a whole chunk, and only lines that polars could
have coerced silently (a number or boolean where a string belongs) or read differently (a key
given twice: polars keeps the first, orjson the last) are re-checked one by one.

Hostile input gets one rule per case on every path: a leading UTF-8 byte order mark is dropped; a
key given twice in one JSON object keeps its last value (as orjson and Python's json do); a JSON
Lines line or a CSV field longer than `max_line_bytes()` is quarantined; a file that cannot be read
at all (I/O error, corrupt parquet) is one UsageError line."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import orjson
import polars as pl

from .errors import RecordError, UsageError
from .schema import JSON, Incompatible, check_value, conform_frame, field_names

CHUNK_BYTES = 8 << 20  # JSON Lines chunk size: bounds memory whatever the file size
INFER_ROWS = 1000  # rows polars infers a chunk's schema from (a mismatch later re-parses with all)
CHUNK_ROWS = 50_000  # rows per chunk for the other containers
MAX_LINE_BYTES = 32 << 20  # default longest JSON Lines line / CSV field (HELPSTEER_MAX_LINE_BYTES overrides)
BOM = b"\xef\xbb\xbf"  # UTF-8 byte order mark, dropped from the start of a file
FAST_DEPTH = 32  # JSON Lines nested this deep skip polars, whose reader slows down with the cube of the nesting (5 s at 200 levels) and crashes near 700
MAX_DEPTH = 254  # deepest JSON a record may nest: orjson writes no deeper, so quarantine.jsonl could not hold it
DEEP_REASON = f"invalid JSON: nested deeper than {MAX_DEPTH} levels"
_SHOWN = 2000  # characters of an unreadable record kept in quarantine.jsonl


def max_line_bytes() -> int:
    """Longest JSON Lines line and CSV field read, in bytes: longer ones are quarantined without
    being held whole in memory. HELPSTEER_MAX_LINE_BYTES overrides the 32 MiB default."""
    raw = os.environ.get("HELPSTEER_MAX_LINE_BYTES")
    if raw is None:
        return MAX_LINE_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"HELPSTEER_MAX_LINE_BYTES={raw!r}: must be a positive whole number of bytes (default {MAX_LINE_BYTES})")
    return value


def _overlong_reason(limit: int) -> str:
    return f"line longer than {limit} bytes (HELPSTEER_MAX_LINE_BYTES); not read"


def _unreadable(path: Path, e: OSError) -> UsageError:
    return UsageError(f"{path}: unreadable file ({e.strerror or e})")


@dataclass
class BadRecord:
    line: int
    reason: str
    record: object  # the parsed record where it parsed, else the raw text


@dataclass
class Chunk:
    frame: pl.DataFrame  # the spec's columns + `_line` (Int64) + `_key` (UInt64, exact-duplicate key)
    bad: list[BadRecord] = field(default_factory=list)
    raw: dict[int, object] = field(default_factory=dict)  # line -> original record (lazy for fast path)
    lines: dict[int, str] | None = None  # JSON Lines: line -> text, for quarantine records

    def record(self, line: int) -> object:
        if line in self.raw:
            return self.raw[line]
        if self.lines is not None and line in self.lines:
            try:
                return orjson.loads(self.lines[line])
            except orjson.JSONDecodeError:
                return self.lines[line]
        return None


@dataclass
class SourceState:
    """What a reader learned about one file while reading it."""

    path: Path
    records: int = 0
    truncated: bool = False
    warnings: list[str] = field(default_factory=list)


def container_of(path: Path) -> str:
    """jsonl | json | csv | parquet | hf"""
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            return "hf"
        raise UsageError(f"{path}: a directory that is not a datasets.save_to_disk folder (no dataset_info.json or dataset_dict.json)")
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    name = path.name.lower()
    for suffix in (".gz", ".gzip"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith(".json"):
        head = _head_bytes(path, 4096).removeprefix(BOM).lstrip()
        return "json" if head.startswith(b"[") else "jsonl"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if name.endswith(".parquet"):
        return "parquet"
    head = _head_bytes(path, 4096).removeprefix(BOM).lstrip()
    if head.startswith(b"["):
        return "json"
    if head.startswith(b"{"):
        return "jsonl"
    if head.startswith(b"PAR1"):
        return "parquet"
    raise UsageError(f"{path}: unknown file type (expected .jsonl, .jsonl.gz, .json, .csv, .parquet or a datasets directory)")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


class _SalvagingGzip(io.RawIOBase):
    """Gunzips a file and, where the stream is cut short or corrupt, ends cleanly after the last
    decompressible byte (gzip.GzipFile raises and loses the block in flight). Multi-member files
    are read whole. `error` tells why the stream ended early, None when it ended properly."""

    def __init__(self, path: Path):
        self._f = open(path, "rb")
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._buf = b""
        self._done = False
        self.error: str | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf and not self._done:
            raw = self._f.read(1 << 20)
            try:
                if not raw:
                    self._buf = self._d.flush()
                    if not self._d.eof:
                        self.error = "compressed file ended before the end-of-stream marker was reached"
                    self._done = True
                    break
                out = self._d.decompress(raw)
                while self._d.eof and self._d.unused_data:  # next gzip member
                    rest = self._d.unused_data
                    self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    out += self._d.decompress(rest)
                self._buf = out
            except zlib.error as e:
                self.error = f"corrupt gzip data ({e})"
                self._done = True
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


def _open_binary(path: Path, state: "SourceState | None" = None):
    if not _is_gzip(path):
        return open(path, "rb")
    raw = _SalvagingGzip(path)
    if state is not None:
        state._gzip = raw
    return io.BufferedReader(raw, 1 << 20)


def _note_truncation(state: "SourceState") -> None:
    raw = getattr(state, "_gzip", None)
    if raw is not None and raw.error and not state.truncated:
        state.truncated = True
        state.warnings.append(f"gzip stream ended early ({raw.error}); ingested what was readable")


def _head_bytes(path: Path, n: int) -> bytes:
    try:
        with _open_binary(path) as f:
            return f.read(n)
    except (OSError, EOFError, zlib.error):
        return b""


def read_all_bytes(path: Path, state: SourceState) -> bytes:
    """Whole file, gunzipped; a truncated gzip yields what was readable and marks the state."""
    if not _is_gzip(path):
        return path.read_bytes().removeprefix(BOM)
    with _open_binary(path, state) as f:
        data = f.read()
    _note_truncation(state)
    return data.removeprefix(BOM)


# --- sampling for format detection -------------------------------------------------------------
def sample_records(path: Path, n: int = 50) -> list[dict]:
    """Up to n parseable records (dicts) from the start of the file, for --format auto."""
    return [rec for _, rec in sample_lines(path, n)]


def sample_lines(path: Path, n: int = 50) -> list[tuple[int, dict]]:
    """(1-based line, record) for up to n parseable records from the start of the file; lines as
    in quarantine.jsonl (file line, CSV header = 1, JSON array element, parquet row). A file that
    cannot be read at all is a UsageError naming it."""
    try:
        return _sample_lines(path, n)
    except OSError as e:
        raise _unreadable(path, e) from None


def _sample_lines(path: Path, n: int) -> list[tuple[int, dict]]:
    kind = container_of(path)
    out: list[tuple[int, dict]] = []
    if kind == "jsonl":
        with _open_binary(path) as f:
            try:
                for ln, raw in _bounded_lines(f, max_line_bytes()):
                    if len(out) >= n:
                        break
                    raw = raw.strip() if raw is not None else b""  # None: a line too long to sample
                    if not raw:
                        continue
                    try:
                        rec = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(rec, dict):
                        out.append((ln, rec))
            except (EOFError, zlib.error):
                pass
    elif kind == "json":
        state = SourceState(path)
        for rec, ln in _iter_json_array(read_all_bytes(path, state)):
            if isinstance(rec, dict):
                out.append((ln, rec))
            if len(out) >= n:
                break
    elif kind == "csv":
        limit = _csv_limit()
        with _open_text(path) as f:
            reader = csv.DictReader(_BoundedText(f, limit), delimiter=_delimiter(path))
            for _ in range(n):
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error:  # e.g. a field over the limit: the reader quarantines it later
                    continue
                out.append((reader.line_num, {k: (None if v == "" else v) for k, v in row.items() if k is not None}))
    elif kind == "parquet":
        out = list(enumerate(_read_parquet(path, n_rows=n).to_dicts(), start=1))
    elif kind == "hf":
        for _, frame in _hf_frames(path):
            out = list(enumerate(frame.head(n).to_dicts(), start=1))
            break
    return out


def _bounded_lines(f, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """(1-based line, bytes) of a binary file, the first line without its BOM; a line longer than
    `limit` bytes comes as None, read past in 1 MiB pieces and never held whole."""
    ln = 0
    while True:
        raw = f.readline(limit + 1)
        if not raw:
            return
        if ln == 0:
            raw = raw.removeprefix(BOM)
        ln += 1
        if len(raw) > limit and not raw.endswith(b"\n"):
            while (more := f.readline(1 << 20)) and not more.endswith(b"\n"):
                pass
            yield ln, None
        else:
            yield ln, raw


class _BoundedText:
    """The lines of a text file, for csv.reader: a line longer than `limit` characters is read
    past in pieces (never held whole) and comes as a blank line; `overlong` keeps its number and start."""

    def __init__(self, f, limit: int):
        self.f, self.limit, self.line, self.overlong = f, limit, 0, []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        text = self.f.readline(self.limit + 2)  # room for the limit and a CRLF
        if not text:
            raise StopIteration
        self.line += 1
        if len(text.rstrip("\r\n")) > self.limit:
            if len(text) == self.limit + 2 and not text.endswith("\n"):  # cut short: read past the rest
                while (more := self.f.readline(1 << 20)) and more[-1] not in "\r\n":
                    pass
            self.overlong.append((self.line, text[:_SHOWN]))
            return "\n"
        return text


def _read_parquet(path: Path, n_rows: int | None = None) -> pl.DataFrame:
    try:
        return pl.read_parquet(path, n_rows=n_rows)
    except (pl.exceptions.PolarsError, OSError) as e:  # truncated, corrupt, or not parquet at all
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"{path}: not a readable parquet file ({first})") from None


def _csv_limit() -> int:
    """Raise the csv module's 128 KiB field limit to max_line_bytes() (characters)."""
    limit = max_line_bytes()
    csv.field_size_limit(limit)
    return limit


# --- chunk iteration ---------------------------------------------------------------------------
def iter_chunks(path: Path, spec: dict, state: SourceState, *, fast: bool = True) -> Iterator[Chunk]:
    """Typed chunks of one file; a file that cannot be read (an I/O error, a corrupt parquet file)
    is a UsageError naming it."""
    try:
        yield from _iter_chunks(path, spec, state, fast=fast)
    except OSError as e:
        raise _unreadable(path, e) from None


def _iter_chunks(path: Path, spec: dict, state: SourceState, *, fast: bool) -> Iterator[Chunk]:
    kind = container_of(path)
    if kind == "jsonl":
        yield from _jsonl_chunks(path, spec, state, fast=fast and not any(t is JSON for t in spec.values()))
    elif kind == "json":
        data = read_all_bytes(path, state)
        yield from _records_chunks(_iter_json_array(data), spec, state)
    elif kind == "csv":
        yield from _csv_chunks(path, spec, state)
    elif kind == "parquet":
        yield from _frame_chunks(_read_parquet(path), spec, state, split=None)
    elif kind == "hf":
        for split, frame in _hf_frames(path):
            yield from _frame_chunks(frame, spec, state, split=split)


def _hf_frames(path: Path) -> Iterator[tuple[str | None, pl.DataFrame]]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
        parts = list(loaded.items()) if isinstance(loaded, datasets.DatasetDict) else [(None, loaded)]
        frames = [(split, pl.from_arrow(ds.data.table)) for split, ds in parts]
    except Exception as e:  # noqa: BLE001  (a damaged folder fails in many ways: ArrowInvalid, JSONDecodeError, FileNotFoundError...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UsageError(f"{path}: not a readable datasets.save_to_disk folder ({type(e).__name__}: {first})") from None
    yield from frames


def _line_key(texts: list[str]) -> pl.Series:
    return pl.Series(texts, dtype=pl.String).hash(seed=0)


def _jsonl_chunks(path: Path, spec: dict, state: SourceState, *, fast: bool) -> Iterator[Chunk]:
    strings = field_names(spec, strings_only=True)
    # A line is suspect when a string-typed key is followed by something that is neither a
    # string nor null: polars would have turned that number/boolean/array into text.
    suspect_re = (
        r'"(?:' + "|".join(sorted(_re_escape(s) for s in strings)) + r')"\s*:\s*[^"\sn]' if strings else None
    )
    limit = max_line_bytes()
    overlong = _overlong_reason(limit)
    line_no = 0
    rest: list[bytes] = []  # the start of a line that has not ended yet, in pieces (joined once)
    rest_len = 0
    skipping: bytes | None = None  # the start of a line longer than `limit`, read past until its end
    first = True
    f = _open_binary(path, state)
    try:
        while True:
            eof = False
            block = f.read(CHUNK_BYTES)
            if first:
                block, first = block.removeprefix(BOM), False
            if not block:
                eof = True
                _note_truncation(state)
            if skipping is not None:
                nl = block.find(b"\n")
                if nl < 0 and not eof:
                    continue  # still inside the long line: drop the block
                line_no += 1
                state.records += 1
                yield _bad_chunk(BadRecord(line_no, overlong, skipping.decode("utf-8", "replace")), spec)
                skipping, block = None, (block[nl + 1 :] if nl >= 0 else b"")
                if eof:
                    break
            cut = len(block) if eof else block.rfind(b"\n")
            if cut < 0:  # no line ends in this block
                rest.append(block)
                rest_len += len(block)
                if rest_len > limit:  # keep only the start, for quarantine
                    skipping, rest, rest_len = b"".join(r[:_SHOWN] for r in rest)[:_SHOWN], [], 0
                continue
            data = b"".join([*rest, memoryview(block)[:cut]])
            pieces = data.split(b"\n")
            rest = [] if eof else [block[cut + 1 :]]
            rest_len = sum(len(r) for r in rest)
            numbered: list[tuple[int, bytes]] = []
            long_lines: list[BadRecord] = []
            for piece in pieces:
                line_no += 1
                piece = piece.strip()
                if len(piece) > limit:  # whole in this block, but over the limit all the same
                    long_lines.append(BadRecord(line_no, overlong, piece[:_SHOWN].decode("utf-8", "replace")))
                elif piece:
                    numbered.append((line_no, piece))
            last_partial = eof and state.truncated and bool(numbered) and not data.endswith(b"\n")  # data: up to the file's end
            state.records += len(numbered) + len(long_lines)
            if numbered:
                chunk = _jsonl_chunk(numbered, spec, fast, suspect_re, truncated_last=last_partial)
                chunk.bad.extend(long_lines)
                yield chunk
            elif long_lines:
                yield _bad_chunk(long_lines[0], spec, long_lines[1:])
            if eof:
                break
    finally:
        f.close()


def _bad_chunk(first: BadRecord, spec: dict, more: list[BadRecord] | None = None) -> Chunk:
    return Chunk(frame=build_frame([], spec, [], []), bad=[first, *(more or [])])


def _duplicate_keys(texts: pl.Series, spec: dict) -> pl.Series:
    """Lines where a field of the spec may be given twice in one object. polars keeps the first
    value and orjson the last: such lines go the orjson way (last key wins, as in Python's json).
    A top-level name counts twice anywhere on the line (one regex pass for all of them), a nested
    one twice within one innermost object; a false alarm only costs the slower path."""
    top = sorted(n for n, t in spec.items() if t is not JSON and n != "__record__")
    nested = sorted(field_names(spec) - set(top))
    keys = texts.str.extract_all('"(?:' + "|".join(_re_escape(n) for n in top) + ')"\\s*:').list.eval(pl.element().str.replace_all(r"\s", ""))
    dup = keys.list.len() != keys.list.n_unique()
    for n in nested:
        dup = dup | texts.str.contains(f'\\{{[^{{}}]*"{_re_escape(n)}"\\s*:[^{{}}]*"{_re_escape(n)}"\\s*:')
    return dup.fill_null(False)


def _re_escape(s: str) -> str:
    import re

    return re.escape(s)


def _jsonl_chunk(numbered: list[tuple[int, bytes]], spec: dict, fast: bool, suspect_re: str | None, truncated_last: bool) -> Chunk:
    texts: list[str] = []
    bad: list[BadRecord] = []
    good: list[tuple[int, bytes, str]] = []
    for ln, piece in numbered:
        try:
            text = piece.decode("utf-8")
        except UnicodeDecodeError as e:
            bad.append(BadRecord(ln, f"undecodable bytes: not UTF-8 at byte {e.start} of the line", piece.decode("utf-8", "replace")))
            continue
        good.append((ln, piece, text))
        texts.append(text)
    lines = {ln: text for ln, _, text in good}
    series = pl.Series(texts, dtype=pl.String)  # built once: keys, depth and suspect checks all read it
    keys = series.hash(seed=0)  # = _line_key(texts)
    deep_slow = None
    if fast and good:
        deep = _deep_lines(series, FAST_DEPTH)
        if deep.any():  # polars never sees them: orjson reads them line by line
            idx, keep = deep.arg_true().to_list(), (~deep).arg_true().to_list()
            deep_slow = _slow_lines([(good[i], keys[i]) for i in idx], spec, truncated_last=truncated_last and idx[-1] == len(good) - 1)
            truncated_last = truncated_last and bool(keep) and keep[-1] == len(good) - 1
            good, texts, keys, series = [good[i] for i in keep], [texts[i] for i in keep], keys.gather(keep), series.gather(keep)
    chunk = _fast_or_slow(good, texts, keys, spec, fast, suspect_re, truncated_last, series=series)
    chunk.bad[:0] = bad
    chunk.lines = lines
    if deep_slow is not None:
        chunk.frame = pl.concat([chunk.frame, deep_slow.frame], how="vertical_relaxed").sort("_line") if chunk.frame.height else deep_slow.frame
        chunk.bad.extend(deep_slow.bad)
    return chunk


def _deep_lines(texts: pl.Series, depth: int) -> pl.Series:
    """Lines whose brackets, outside strings, nest `depth` levels or more (or do not balance):
    strings dropped, then every innermost [] / {} pair removed depth - 1 times, vectorised."""
    out = pl.Series([False] * texts.len(), dtype=pl.Boolean)
    idx = (texts.str.count_matches(r"[\[{]") >= depth).arg_true()  # fewer openers cannot nest that deep
    if idx.len() == 0:
        return out
    brackets = texts.gather(idx).str.replace_all(r'"(?:[^"\\]|\\.)*"', "").str.replace_all(r"[^\[\]{}]", "")
    keep = (brackets.str.len_bytes() >= depth).arg_true()
    idx, left = idx.gather(keep), brackets.gather(keep)
    for _ in range(depth - 1):
        left = left.str.replace_all(r"\[\]|\{\}", "")
    return out.scatter(idx.filter(left.str.len_bytes() > 0), True)


def _fast_or_slow(good: list[tuple[int, bytes, str]], texts: list[str], keys: pl.Series, spec: dict, fast: bool, suspect_re: str | None,
                  truncated_last: bool, series: pl.Series | None = None) -> Chunk:
    """polars parses the lines, orjson re-reads those polars may have read wrongly; the whole
    chunk goes line by line when polars cannot parse it."""
    bad: list[BadRecord] = []
    if fast and good:
        try:
            frame = _parse_chunk(b"\n".join(p for _, p, _ in good), texts, spec)
            frame = conform_frame(frame, spec)
            frame = frame.with_columns(
                pl.Series("_line", [ln for ln, _, _ in good], dtype=pl.Int64), keys.alias("_key")
            )
            series = pl.Series(texts, dtype=pl.String) if series is None else series
            suspect = _duplicate_keys(series, spec)
            if suspect_re is not None:
                suspect = suspect | series.str.contains(suspect_re)
            if suspect.any():
                clean = frame.filter(~suspect)
                redo = [(good[i], keys[i]) for i in suspect.arg_true().to_list()]
                slow = _slow_lines(redo, spec, truncated_last=False)
                frame = pl.concat([clean, slow.frame], how="vertical_relaxed").sort("_line") if slow.frame.height else clean
                bad.extend(slow.bad)
            return Chunk(frame=frame, bad=bad)
        except (pl.exceptions.PolarsError, Incompatible, ValueError, TypeError):
            pass  # something in this chunk needs the line-by-line path
    return _slow_lines([(g, keys[i]) for i, g in enumerate(good)], spec, truncated_last=truncated_last)


def _schema_names(dt, out: set[str]) -> None:
    """Every struct field name inside dtype `dt`, into `out` (a loop, not recursion: an inferred
    dtype may be nested as deep as the JSON, about 1,000 levels)."""
    stack = [dt]
    while stack:
        dt = stack.pop()
        if isinstance(dt, pl.List):
            stack.append(dt.inner)
        elif isinstance(dt, pl.Struct):
            out.update(f.name for f in dt.fields)
            stack.extend(f.dtype for f in dt.fields)


def _parse_chunk(data: bytes, texts: list[str], spec: dict) -> pl.DataFrame:
    """polars parse of a chunk, inferring the schema from its first rows (the whole chunk when a
    later row disagrees, or when a field of the spec is missing from the inferred schema but
    occurs in the text: short inference drops such fields silently)."""
    try:
        frame = pl.read_ndjson(io.BytesIO(data), infer_schema_length=INFER_ROWS)
    except pl.exceptions.PolarsError:
        return pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
    seen = set(frame.columns)
    for dt in frame.schema.values():
        _schema_names(dt, seen)
    absent = sorted({n for n in field_names(spec)} - seen)
    if absent:
        pattern = '"(?:' + "|".join(_re_escape(a) for a in absent) + ')"\\s*:'
        if pl.Series(texts, dtype=pl.String).str.contains(pattern).any():
            return pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
    return frame


def _slow_lines(items, spec: dict, truncated_last: bool) -> Chunk:
    bad: list[BadRecord] = []
    rows: list[dict] = []
    line_col: list[int] = []
    key_col: list[int] = []
    last = items[-1][0][0] if items else None
    for (ln, piece, text), key in items:
        try:
            rec = orjson.loads(piece)
        except orjson.JSONDecodeError as e:
            reason = f"invalid JSON: {e}"
            if truncated_last and ln == last:
                reason = "incomplete record: the gzip stream ended early (truncated file)"
            bad.append(BadRecord(ln, reason, text))
            continue
        if piece.count(b"[") + piece.count(b"{") > MAX_DEPTH and _too_deep(rec):
            bad.append(BadRecord(ln, DEEP_REASON, text))
            continue
        try:
            rows.append(typed_record(rec, spec))
        except RecordError as e:
            bad.append(BadRecord(ln, e.reason, rec))
            continue
        line_col.append(ln)
        key_col.append(key)
    return Chunk(frame=build_frame(rows, spec, line_col, key_col), bad=bad)


def _too_deep(rec) -> bool:
    """Nested deeper than MAX_DEPTH levels (orjson refuses to write it)."""
    try:
        orjson.dumps(rec)
    except orjson.JSONEncodeError as e:
        return "Recursion limit" in str(e)
    return False


def typed_record(rec, spec: dict, coerce_strings: bool = False) -> dict:
    if not isinstance(rec, dict):
        kind = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean", type(None): "null"}.get(type(rec), type(rec).__name__)
        raise RecordError(f"record is {kind}, not a JSON object")
    out = {name: check_value(rec.get(name), t, name, coerce_strings) for name, t in spec.items() if name != "__record__"}
    if "__record__" in spec:  # readers that take the whole record (Label Studio JSON_MIN)
        out["__record__"] = rec
    return out


def build_frame(rows: list[dict], spec: dict, lines: list[int], keys: list[int]) -> pl.DataFrame:
    cols = []
    for name, t in spec.items():
        values = [r[name] for r in rows]
        cols.append(pl.Series(name, values, dtype=pl.Object if t is JSON else t))
    cols.append(pl.Series("_line", lines, dtype=pl.Int64))
    cols.append(pl.Series("_key", keys, dtype=pl.UInt64))
    return pl.DataFrame(cols)


def _records_chunks(records: Iterator[tuple[object, int]], spec: dict, state: SourceState, coerce_strings: bool = False) -> Iterator[Chunk]:
    """Chunks from (record or BadRecord, line) pairs of an in-memory container."""
    batch: list[tuple[object, int]] = []
    for item in records:
        batch.append(item)
        state.records += 1
        if len(batch) >= CHUNK_ROWS:
            yield _records_chunk(batch, spec, coerce_strings)
            batch = []
    if batch:
        yield _records_chunk(batch, spec, coerce_strings)


def _records_chunk(batch, spec: dict, coerce_strings: bool) -> Chunk:
    bad: list[BadRecord] = []
    rows, lines, texts, raw = [], [], [], {}
    for rec, ln in batch:
        if isinstance(rec, BadRecord):
            bad.append(rec)
            continue
        try:
            text = orjson.dumps(rec, option=orjson.OPT_SORT_KEYS).decode()
        except TypeError as e:  # lone surrogates from undecodable bytes, non-JSON values, or too deep
            if "Recursion limit" in str(e):
                bad.append(BadRecord(ln, DEEP_REASON, None))
            else:
                bad.append(BadRecord(ln, f"undecodable bytes: {e}", repr(rec)[:2000]))
            continue
        try:
            rows.append(typed_record(rec, spec, coerce_strings))
        except RecordError as e:
            bad.append(BadRecord(ln, e.reason, rec))
            continue
        lines.append(ln)
        texts.append(text)
        raw[ln] = rec
    keys = _line_key(texts).to_list() if texts else []
    return Chunk(frame=build_frame(rows, spec, lines, keys), bad=bad, raw=raw)


def _iter_json_array(data: bytes) -> Iterator[tuple[object, int]]:
    """Elements of a JSON array (element number = line); salvages the elements before a syntax error."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, list):
        for i, rec in enumerate(parsed, start=1):
            yield rec, i
        return
    if isinstance(parsed, dict):
        yield parsed, 1
        return
    text = data.decode("utf-8", "surrogateescape")
    dec = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if not text.startswith("[", pos):
        yield BadRecord(1, "invalid JSON: the file is neither a JSON array nor JSON Lines", text[:2000]), 1
        return
    pos += 1
    i = 0
    while True:
        pos = _skip_ws(text, pos)
        if text.startswith("]", pos):
            return
        i += 1
        try:
            rec, end = dec.raw_decode(text, pos)
        except RecursionError:  # nested deeper than Python's parser goes: skip the element by its brackets
            end = _skip_nested(text, pos)
            if end is None:
                yield BadRecord(i, f"invalid JSON at element {i}: nested too deep (depth limit exceeded) and never closed; the rest of the file is unreadable", text[pos : pos + 2000]), i
                return
            yield BadRecord(i, f"invalid JSON at element {i}: nested too deep (depth limit exceeded)", text[pos : min(end, pos + 2000)]), i
            pos = _skip_ws(text, end)
            if text.startswith(",", pos):
                pos += 1
            continue
        except json.JSONDecodeError as e:
            yield BadRecord(i, f"invalid JSON at element {i} (char {e.pos}): {e.msg}; the rest of the file is unreadable", text[pos : pos + 2000]), i
            return
        yield rec, i
        pos = _skip_ws(text, end)
        if text.startswith(",", pos):
            pos += 1
        elif not text.startswith("]", pos):
            yield BadRecord(i + 1, f"invalid JSON after element {i} (char {pos}): expected ',' or ']'; the rest of the file is unreadable", text[pos : pos + 2000]), i + 1
            return


_JSON_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')  # a string (skipped whole) or a bracket


def _skip_nested(text: str, pos: int) -> int | None:
    """End of the array or object that starts at pos, by counting brackets outside strings (no
    recursion, so any depth); None when it is never closed."""
    depth = 0
    for m in _JSON_BRACKETS.finditer(text, pos):
        t = m.group()
        if t in ("[", "{"):
            depth += 1
        elif t in ("]", "}"):
            depth -= 1
            if depth == 0:
                return m.end()
    return None


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _delimiter(path: Path) -> str:
    return "\t" if ".tsv" in path.name.lower() else ","


def _open_text(path: Path, state: "SourceState | None" = None):
    # utf-8-sig: a leading byte order mark (Excel's CSV export) must not become part of the first header
    return io.TextIOWrapper(_open_binary(path, state), encoding="utf-8-sig", errors="surrogateescape", newline="")


def _csv_chunks(path: Path, spec: dict, state: SourceState) -> Iterator[Chunk]:
    limit = _csv_limit()

    def records():
        f = _open_text(path, state)
        try:
            lines = _BoundedText(f, limit)
            reader = csv.reader(lines, delimiter=_delimiter(path))
            try:
                header = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise UsageError(f"{path}:1: malformed CSV header ({e})") from None
            except (EOFError, OSError, zlib.error) as e:
                state.truncated = True
                state.warnings.append(f"file ended early ({e})")
                return
            if lines.overlong:
                raise UsageError(f"{path}:1: CSV header longer than {limit} characters (HELPSTEER_MAX_LINE_BYTES)")
            too_long = f"malformed CSV: line longer than {limit} characters (HELPSTEER_MAX_LINE_BYTES); not read"
            while True:
                row, bad = None, None
                try:
                    row = next(reader)
                except StopIteration:
                    _note_truncation(state)
                    return
                except (EOFError, OSError, zlib.error) as e:
                    state.truncated = True
                    state.warnings.append(f"gzip stream ended early ({e}); ingested what was readable")
                    return
                except csv.Error as e:
                    reason = f"malformed CSV: {e}"
                    if "field larger than field limit" in str(e):
                        reason = f"malformed CSV: a field longer than {limit} characters (HELPSTEER_MAX_LINE_BYTES); not read"
                    bad = BadRecord(reader.line_num, reason, None)
                while lines.overlong:  # lines read past (they came as blank lines): each is a record, quarantined
                    long_ln, start = lines.overlong.pop(0)
                    yield BadRecord(long_ln, too_long, start), long_ln
                if bad is not None:
                    yield bad, bad.line
                    continue
                ln = reader.line_num
                if not row or all(c == "" for c in row):
                    continue
                if len(row) != len(header):
                    yield BadRecord(ln, f"row has {len(row)} fields, the header has {len(header)}", row), ln
                    continue
                if any(_has_surrogates(c) for c in row):
                    yield BadRecord(ln, "undecodable bytes: not UTF-8", [c.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for c in row]), ln
                    continue
                yield {h: (None if c == "" else c) for h, c in zip(header, row)}, ln
        finally:
            f.close()

    yield from _records_chunks(records(), spec, state, coerce_strings=True)


def _has_surrogates(s: str) -> bool:
    try:
        s.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _frame_chunks(frame: pl.DataFrame, spec: dict, state: SourceState, split: str | None) -> Iterator[Chunk]:
    if split is not None and "split" in spec and "split" not in frame.columns:
        frame = frame.with_columns(pl.lit(split).alias("split"))
    for start in range(0, frame.height, CHUNK_ROWS):
        part = frame.slice(start, CHUNK_ROWS)
        state.records += part.height
        lines = list(range(start + 1, start + part.height + 1))
        try:
            typed = conform_frame(part, spec)
            texts = [orjson.dumps(r, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY, default=str).decode() for r in part.to_dicts()]
            typed = typed.with_columns(pl.Series("_line", lines, dtype=pl.Int64), _line_key(texts).alias("_key"))
            yield Chunk(frame=typed, raw={})
        except (Incompatible, pl.exceptions.PolarsError):
            yield _records_chunk(list(zip(part.to_dicts(), lines)), spec, coerce_strings=False)


def file_sha256(path: Path) -> str:
    """sha256 of a file; of a folder, of each file's relative path and bytes, in sorted order."""
    import hashlib

    if not path.is_dir():
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    h = hashlib.sha256()  # one hash over the whole folder: file_digest cannot feed an existing hash
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(path)).encode())
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def split_from_name(path: Path) -> str | None:
    """train / validation / test from a file or folder name (train.jsonl.gz, validation..., test...)."""
    import re

    for part in reversed(path.parts[-3:]):
        name = part.lower()
        m = re.search(r"(?:^|[^a-z])(train|training|validation|valid|val|dev|test|testing)(?:[^a-z]|$)", name)
        if m:
            word = m.group(1)
            return {"training": "train", "valid": "validation", "val": "validation", "dev": "validation", "testing": "test"}.get(word, word)
    return None


__all__ = [
    "BadRecord",
    "Chunk",
    "SourceState",
    "container_of",
    "file_sha256",
    "iter_chunks",
    "sample_lines",
    "sample_records",
    "split_from_name",
    "typed_record",
]
