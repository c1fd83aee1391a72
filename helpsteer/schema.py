"""Canonical tables of a workspace dataset (see ../shared/CONTRACT.md) and the raw-record type specs
that format readers declare. One place for every column name and dtype."""

from __future__ import annotations

import polars as pl

SCHEMA_VERSION = 1

TURN = pl.Struct({"role": pl.String, "content": pl.String})
CONTEXT = pl.List(TURN)

# HelpSteer attributes, in the order of the dataset cards; scores 0..4.
HELPSTEER_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")

TABLES: dict[str, dict[str, pl.DataType]] = {
    "responses": {
        "response_id": pl.String,
        "prompt_id": pl.String,
        "context": CONTEXT,  # the conversation before the response
        "prompt": pl.String,  # last user turn
        "response": pl.String,
        "domain": pl.String,
        "language": pl.String,
        "split": pl.String,
        "source": pl.String,
        "flags": pl.List(pl.String),  # e.g. empty_response
        "model": pl.String,  # the model that wrote it, where the source says
        "style": pl.Int64,  # RM-Bench style index 0..2
    },
    "ratings": {
        "response_id": pl.String,
        "annotator_id": pl.String,  # null = aggregated / consensus label
        "attribute": pl.String,
        "score": pl.Float64,  # on the source's scale
        "source": pl.String,
    },
    "preferences": {
        "pair_id": pl.String,
        "prompt_id": pl.String,
        "response_a_id": pl.String,
        "response_b_id": pl.String,
        "annotator_id": pl.String,  # null = aggregated / gold label
        "strength": pl.Float64,  # [-3, 3]; negative = A better (HelpSteer convention)
        "justification": pl.String,
        "subset": pl.String,  # benchmark subset (RewardBench, RM-Bench domain, ...)
        "style_a": pl.Int64,  # RM-Bench style indices of the two responses
        "style_b": pl.Int64,
        "flags": pl.List(pl.String),  # e.g. context_mismatch
        "source": pl.String,
    },
    "feedback": {
        "response_id": pl.String,
        "annotator_id": pl.String,
        "feedback": pl.String,
        "source": pl.String,
    },
    "edits": {
        "edit_id": pl.String,
        "original_response_id": pl.String,
        "edited_response_id": pl.String,
        "quality": pl.String,  # "good" / "bad" for edit_quality, null for plain edits
        "feedback": pl.List(pl.String),
        "change_summary": pl.String,
        "source": pl.String,
    },
    "principles": {
        "response_id": pl.String,
        "annotator_id": pl.String,
        "principle": pl.String,
        "fulfilment": pl.Float64,  # 1.0 = Yes, 0.0 = No
        "explanation": pl.String,  # the annotator's reason for the verdict, where the source has one (TTCW)
        "source": pl.String,
    },
}


def empty(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=TABLES[table])


def conform_table(table: str, df: pl.DataFrame) -> pl.DataFrame:
    """Select and cast the table's columns, adding missing ones as nulls."""
    schema = TABLES[table]
    return df.select(
        [
            (pl.col(c) if c in df.columns else pl.lit(None)).cast(t).alias(c)
            for c, t in schema.items()
        ]
    )


# --- raw record specs -------------------------------------------------------------------------
class _Json:
    """Sentinel dtype: any JSON value, kept as a Python object (readers that parse it themselves)."""

    def __repr__(self) -> str:
        return "JSON"


JSON = _Json()


class Incompatible(Exception):
    pass


def _compat_expr(expr: pl.Expr, actual: pl.DataType, expected) -> pl.Expr:
    """Expression that turns a column of dtype `actual` into `expected`, or raise Incompatible.

    Only lossless conversions: ints widen to floats; structs keep the expected fields (extra
    fields dropped, missing ones null); an all-null column becomes anything. Strings never come
    from numbers or booleans -- that is exactly the coercion polars' JSON reader does silently."""
    if actual == pl.Null:
        return pl.lit(None).cast(expected) if expected is not JSON else expr
    if expected is JSON:
        raise Incompatible("JSON field")
    if expected == pl.String:
        if actual == pl.String:
            return expr
        raise Incompatible(f"{actual} -> String")
    if expected in (pl.Float64, pl.Int64):
        if actual.is_numeric():
            return expr.cast(expected) if expected == pl.Float64 or actual.is_integer() else _raise(actual, expected)
        raise Incompatible(f"{actual} -> {expected}")
    if expected == pl.Boolean:
        if actual == pl.Boolean:
            return expr
        raise Incompatible(f"{actual} -> Boolean")
    if isinstance(expected, pl.List):
        if not isinstance(actual, pl.List):
            raise Incompatible(f"{actual} -> List")
        if actual.inner.is_numeric() and expected.inner in (pl.Float64,) or actual.inner == expected.inner:
            return expr.cast(expected)  # lossless: ints widen to floats, same type stays
        inner = _compat_expr(pl.element(), actual.inner, expected.inner)
        return expr.list.eval(inner)
    if isinstance(expected, pl.Struct):
        if not isinstance(actual, pl.Struct):
            raise Incompatible(f"{actual} -> Struct")
        have = {f.name: f.dtype for f in actual.fields}
        parts = []
        for f in expected.fields:
            if f.name in have:
                parts.append(_compat_expr(expr.struct.field(f.name), have[f.name], f.dtype).alias(f.name))
            else:
                parts.append(pl.lit(None).cast(f.dtype).alias(f.name))
        return pl.struct(parts)
    raise Incompatible(f"unsupported {expected}")


def _raise(actual, expected):
    raise Incompatible(f"{actual} -> {expected}")


def conform_frame(df: pl.DataFrame, spec: dict) -> pl.DataFrame:
    """Cast a frame parsed by polars to the reader's spec (raise Incompatible when not lossless)."""
    exprs = []
    for name, expected in spec.items():
        if name not in df.columns:
            exprs.append((pl.lit(None).cast(expected) if expected is not JSON else pl.lit(None)).alias(name))
        else:
            exprs.append(_compat_expr(pl.col(name), df.schema[name], expected).alias(name))
    return df.select(exprs)


def field_names(spec: dict, strings_only: bool = False) -> set[str]:
    """Every field name (top-level or nested in structs) of a spec; with strings_only, those whose
    expected type is String (the ones polars' JSON reader could have filled by coercion)."""
    names: set[str] = set()

    def walk(name, dt):
        if dt is JSON:
            return
        if not strings_only or dt == pl.String:
            names.add(name)
        if isinstance(dt, pl.List):
            walk(name, dt.inner)
        elif isinstance(dt, pl.Struct):
            for f in dt.fields:
                walk(f.name, f.dtype)

    for n, t in spec.items():
        walk(n, t)
    return names


_TYPE_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object", type(None): "null"}


def _describe(v) -> str:
    text = repr(v) if not isinstance(v, (dict, list)) else type(v).__name__
    if isinstance(v, bool):
        text = "true" if v else "false"
    return f"{_TYPE_NAMES.get(type(v), type(v).__name__)} {text[:40]}"


def check_value(value, expected, path: str, coerce_strings: bool = False):
    """Validate one Python value against a spec dtype; return the (possibly coerced) value.

    Raises RecordError naming the field. `coerce_strings` parses numbers from text (CSV cells)."""
    from .errors import RecordError

    if value is None or expected is JSON:
        return value
    if expected == pl.String:
        if isinstance(value, str):
            return value
        if coerce_strings and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise RecordError(f"field '{path}': expected a string, got {_describe(value)}", path)
    if expected in (pl.Float64, pl.Int64):
        if isinstance(value, bool):
            raise RecordError(f"field '{path}': expected a number, got {_describe(value)}", path)
        if isinstance(value, (int, float)):
            if expected == pl.Int64 and isinstance(value, float):
                if not value.is_integer():
                    raise RecordError(f"field '{path}': expected an integer, got {value!r}", path)
                return int(value)
            return float(value) if expected == pl.Float64 else value
        if coerce_strings and isinstance(value, str):
            text = value.strip()
            if text == "":
                return None
            try:
                num = float(text)
            except ValueError:
                raise RecordError(f"field '{path}': expected a number, got {_describe(value)}", path) from None
            if expected == pl.Int64:
                if not num.is_integer():
                    raise RecordError(f"field '{path}': expected an integer, got {value!r}", path)
                return int(num)
            return num
        raise RecordError(f"field '{path}': expected a number, got {_describe(value)}", path)
    if expected == pl.Boolean:
        if isinstance(value, bool):
            return value
        raise RecordError(f"field '{path}': expected true/false, got {_describe(value)}", path)
    if isinstance(expected, pl.List):
        if not isinstance(value, list):
            raise RecordError(f"field '{path}': expected a list, got {_describe(value)}", path)
        return [check_value(v, expected.inner, f"{path}[{i}]", coerce_strings) for i, v in enumerate(value)]
    if isinstance(expected, pl.Struct):
        if not isinstance(value, dict):
            raise RecordError(f"field '{path}': expected an object, got {_describe(value)}", path)
        return {f.name: check_value(value.get(f.name), f.dtype, f"{path}.{f.name}", coerce_strings) for f in expected.fields}
    raise RecordError(f"field '{path}': unsupported type {expected}", path)
