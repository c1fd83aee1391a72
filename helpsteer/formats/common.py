"""Shared pieces of the format readers: the Result they return, and vectorised builders for the
canonical tables (ids, prompt, flags) so every reader makes responses and pairs the same way."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from ..ids import context_key_expr, hash_series
from ..schema import CONTEXT, TABLES, conform_table


@dataclass
class Result:
    """Canonical rows from one chunk. Every table frame carries `_line`, the input line it came
    from; `rejects` holds (`_line`, `reason`) for records that must go to quarantine. `parts` holds
    (line, reason, part) for a part of a record that goes to quarantine while the record's other
    rows are kept (one Label Studio annotation of a task whose other annotations are valid)."""

    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    rejects: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema={"_line": pl.Int64, "reason": pl.String}))
    parts: list[tuple[int, str, object]] = field(default_factory=list)

    def add(self, table: str, df: pl.DataFrame) -> None:
        df = conform_table(table, df).with_columns(df["_line"].cast(pl.Int64)) if "_line" in df.columns else df
        if table in self.tables:
            self.tables[table] = pl.concat([self.tables[table], df], how="vertical_relaxed")
        else:
            self.tables[table] = df

    def reject(self, lines: pl.Series, reasons: pl.Series) -> None:
        more = pl.DataFrame({"_line": lines.cast(pl.Int64), "reason": reasons.cast(pl.String)})
        self.rejects = pl.concat([self.rejects, more])


def user_context(prompt_col: str) -> pl.Expr:
    """A single-turn context: [{"role": "user", "content": prompt}]."""
    return pl.concat_list(pl.struct(pl.lit("user").alias("role"), pl.col(prompt_col).alias("content"))).cast(CONTEXT)


def split_reasons(df: pl.DataFrame, checks: list[tuple[pl.Expr, pl.Expr]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Apply (bad condition, reason) checks in order; return (good rows, rejects[_line, reason]).

    Conditions are evaluated on every row; reason texts only on the (few) bad rows."""
    empty_rejects = pl.DataFrame(schema={"_line": pl.Int64, "reason": pl.String})
    if not checks or df.height == 0:
        return df, empty_rejects
    flags = df.select([c.fill_null(False).alias(f"_c{i}") for i, (c, _) in enumerate(checks)])
    any_bad = flags.select(pl.any_horizontal(pl.all()).alias("b"))["b"]
    if not any_bad.any():
        return df, empty_rejects
    bad_rows = df.filter(any_bad)
    bad_flags = flags.filter(any_bad)
    expr = pl.lit(None, dtype=pl.String)
    for i, (_, reason) in reversed(list(enumerate(checks))):
        expr = pl.when(pl.col(f"_c{i}")).then(reason.cast(pl.String)).otherwise(expr)
    reasons = pl.concat([bad_rows, bad_flags], how="horizontal").select("_line", expr.alias("reason"))
    return df.filter(~any_bad), reasons


def missing(col: str) -> tuple[pl.Expr, pl.Expr]:
    return pl.col(col).is_null(), pl.lit(f"field '{col}': missing or null")


def int_in_range(col: str, lo: int, hi: int, what: str = "rating") -> tuple[pl.Expr, pl.Expr]:
    c = pl.col(col)
    return (
        (c < lo) | (c > hi) | (c != c.round()) | c.is_nan(),
        pl.format(f"field '{col}': {what} {{}} is not an integer in {lo}..{hi}", c),
    )


def context_ok(col: str = "context") -> list[tuple[pl.Expr, pl.Expr]]:
    c = pl.col(col)
    bad_turn = c.list.eval(
        pl.element().struct.field("role").is_null() | pl.element().struct.field("content").is_null()
    ).list.any()
    return [
        (c.is_null(), pl.lit(f"field '{col}': missing or null")),
        (c.list.len() == 0, pl.lit(f"field '{col}': empty conversation")),
        (bad_turn, pl.lit(f"field '{col}': every turn needs a string 'role' and 'content'")),
    ]


def with_response_ids(df: pl.DataFrame, context_col: str, response_col: str, prefix: str) -> pl.DataFrame:
    """Add `{prefix}id` (hash of context + response) and `{prefix}prompt_id` (hash of context)."""
    key = df.select(context_key_expr(context_col).alias("k"))["k"]
    uniq = key.unique()
    prompt_ids = dict(zip(uniq.to_list(), hash_series(uniq).to_list()))  # many responses share a context
    return df.with_columns(
        hash_series(key, df[response_col]).alias(f"{prefix}id"),
        key.replace_strict(prompt_ids, return_dtype=pl.String).alias(f"{prefix}prompt_id"),
    )


def responses_from(
    df: pl.DataFrame,
    *,
    context: str,
    response: str,
    id_col: str,
    prompt_id_col: str,
    source: str,
    meta: dict[str, pl.Expr] | None = None,
) -> pl.DataFrame:
    """Responses-table rows from a frame that already has ids (see with_response_ids)."""
    meta = meta or {}
    ctx = pl.col(context)
    last_user = ctx.list.eval(
        pl.element().filter(pl.element().struct.field("role") == "user").struct.field("content")
    ).list.last()
    resp = pl.col(response)
    flags = pl.when(resp.str.strip_chars() == "").then(pl.lit(["empty_response"])).otherwise(pl.lit([], dtype=pl.List(pl.String)))
    cols = {
        "response_id": pl.col(id_col),
        "prompt_id": pl.col(prompt_id_col),
        "context": ctx,
        "prompt": last_user,
        "response": resp,
        "source": pl.lit(source),
        "flags": flags,
        "_line": pl.col("_line"),
    }
    for name in ("domain", "language", "split", "model", "style"):
        if name in meta:
            cols[name] = meta[name]
    return df.select(**cols)


def content_pair_id(fmt: str, a: pl.Series, b: pl.Series, extra: pl.Series | None = None) -> pl.Series:
    """Pair id from content, for sources without an item id."""
    parts = [pl.Series([fmt] * len(a)), a, b] + ([extra] if extra is not None else [])
    return hash_series(*parts)


class RowBuilder:
    """Canonical rows built one record at a time, for formats whose records need Python logic
    (transcripts to split, JSON fields of several shapes, Label Studio results)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.rows: dict[str, list[dict]] = {t: [] for t in TABLES}
        self.bad_lines: list[int] = []
        self.bad_reasons: list[str] = []
        self.bad_parts: list[tuple[int, str, object]] = []

    def response(self, context: list[dict], text: str, line: int, **meta) -> tuple[str, str]:
        from ..ids import context_key, stable_hash

        key = context_key(context)
        rid, pid = stable_hash(key, text), stable_hash(key)
        prompt = next((t["content"] for t in reversed(context) if t.get("role") == "user"), None)
        flags = ["empty_response"] if not text.strip() else []
        row = {"response_id": rid, "prompt_id": pid, "context": context, "prompt": prompt, "response": text,
               "source": self.ctx.source, "flags": flags, "split": meta.pop("split", None) or self.ctx.split, "_line": line}
        row.update(meta)
        self.rows["responses"].append(row)
        return rid, pid

    def add(self, table: str, line: int, **row) -> None:
        row.setdefault("source", self.ctx.source)
        row["_line"] = line
        self.rows[table].append(row)

    def reject(self, line: int, reason: str) -> None:
        self.bad_lines.append(line)
        self.bad_reasons.append(reason)

    def reject_missing(self, line: int, record: dict, fields: tuple[str, ...]) -> bool:
        """Reject the record on `line` naming the first of `fields` that is null; True when rejected."""
        bad = next((f for f in fields if record[f] is None), None)
        if bad is not None:
            self.reject(line, f"field '{bad}': missing or null")
        return bad is not None

    def reject_part(self, line: int, reason: str, part: object) -> None:
        """Quarantine one part of the record on `line` (its rows must not have been added), keeping the rest."""
        self.bad_parts.append((line, reason, part))

    def result(self) -> Result:
        res = Result(parts=list(self.bad_parts))
        for table, rows in self.rows.items():
            if rows:
                schema = {**TABLES[table], "_line": pl.Int64}
                res.add(table, pl.DataFrame([{c: r.get(c) for c in schema} for r in rows], schema=schema, orient="row"))
        if self.bad_lines:
            res.reject(pl.Series(self.bad_lines, dtype=pl.Int64), pl.Series(self.bad_reasons, dtype=pl.String))
        return res


def iter_records(df: pl.DataFrame):
    """(line, row dict) for each row of a typed chunk."""
    for row in df.iter_rows(named=True):
        yield row["_line"], row
