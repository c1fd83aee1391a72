"""Column mappings (`ingest --map`): a file in a schema no reader knows, read as one of four shapes.

  pairs     prompt|context, response_a, response_b, label (--label-values VALUE=1|2|0) or strength; or chosen, rejected
  ratings   prompt|context, response, ATTRIBUTE=COL ... (or attribute + score), annotator; --scale LO-HI
  rankings  prompt|context, drafts (a list), ranks (one ranking, 1 = best) or rankings (one per annotator)
  criteria  prompt|context, response, CRITERION=COL ... (or criterion + verdict [+ explanation]), annotator
A `context` column (turns as {role, content} or {from, value}) makes any shape conversational. README "Ingest"."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import polars as pl

from ..errors import RecordError, UsageError
from ..ids import context_key_expr, hash_series
from ..labels import YES_NO
from ..schema import CONTEXT, JSON, check_value
from . import Ctx, Format
from .common import Result, content_pair_id, responses_from, split_reasons, user_context, with_response_ids

SHAPES = ("pairs", "ratings", "rankings", "criteria")
_COMMON = ("prompt", "context", "annotator", "split", "domain", "language")
TARGETS = {
    "pairs": _COMMON + ("id", "response_a", "response_b", "label", "strength", "chosen", "rejected", "justification", "subset", "model_a", "model_b"),
    "ratings": _COMMON + ("response", "model", "attribute", "score"),  # any other key: an attribute
    "rankings": _COMMON + ("id", "drafts", "ranks", "rankings", "subset"),
    "criteria": _COMMON + ("response", "model", "criterion", "verdict", "explanation"),  # any other key: a criterion
}
OPEN = {"ratings": "attribute", "criteria": "criterion"}  # shapes whose other keys name attributes / criteria
# how a target's column is read: text (string), number, key (a scalar compared as text), or a structure
_KIND = {"annotator": "key", "id": "key", "label": "key", "verdict": "key", "criterion": "key", "attribute": "key",
         "strength": "number", "score": "number", "context": "turns", "drafts": "drafts", "ranks": "ranks", "rankings": "rankings"}
_LABELS = {1.0: -1.0, 2.0: 1.0, 0.0: 0.0}  # pairs label -> strength (negative = response A better)
# the label rules' Yes/No values plus pass/fail, in this order (error messages list them)
_YES = {**{k: v for k, v in YES_NO.items() if v}, "pass": 1.0, **{k: v for k, v in YES_NO.items() if not v}, "fail": 0.0}
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant", "model": "assistant",
          "chatgpt": "assistant", "system": "system"}
_OPEN_PREFIX = "\x00open:"  # frame column of an attribute / criterion (cannot clash with a target name)


# --- the options: --map, --label-values, --scale -----------------------------------------------
@dataclass(frozen=True)
class Mapping:
    """A parsed `--map` (+ `--label-values`, `--scale`): target -> source column, per shape."""

    shape: str
    fields: dict[str, str]  # fixed target -> source column
    open: dict[str, str] = field(default_factory=dict)  # attribute / criterion name -> source column
    values: dict[str, float] | None = None  # --label-values: source value (as text) -> canonical number
    scale: dict[str, tuple[float, float]] | None = None  # --scale: attribute ("*" = all) -> (lo, hi)
    text: str = ""  # the options as given, kept in the manifest

    def column(self, target: str) -> str:
        return self.fields.get(target) or self.open.get(target) or target

    def columns(self) -> list[str]:
        return list(dict.fromkeys([*self.fields.values(), *self.open.values()]))

    @property
    def long(self) -> bool:
        """Ratings as attribute + score rows, or criteria as criterion + verdict rows."""
        return ("attribute" in self.fields) if self.shape == "ratings" else ("criterion" in self.fields)

    def kind(self, target: str) -> str:
        if target in self.open:
            return "key" if self.shape == "criteria" else "rating" if self.values else "number"
        if target == "score" and self.values:
            return "rating"  # text ratings mapped to numbers by --label-values
        return _KIND.get(target, "text")

    def spec(self) -> dict:
        """Raw field -> dtype for helpsteer/containers.py: strings and numbers typed, the rest JSON."""
        out: dict = {}
        for target in [*self.fields, *self.open]:
            kind = self.kind(target)
            dt = pl.String if kind == "text" else pl.Float64 if kind == "number" else JSON
            col = self.column(target)
            out[col] = dt if out.get(col, dt) == dt else JSON  # one column read two ways: take it raw
        return out

    def format(self) -> Format:
        norm = {"pairs": _norm_pairs, "ratings": _norm_ratings, "rankings": _norm_rankings, "criteria": _norm_criteria}[self.shape]
        return Format(f"mapped-{self.shape}", self.spec(), tuple(self.columns()), lambda df, ctx: norm(df, ctx, self),
                      description=f"--map ({self.shape})")

    def manifest(self) -> dict:
        return {"shape": self.shape, "map": {**self.fields, **self.open}, "options": self.text}


def infer_shape(keys: list[str]) -> str:
    """The shape a --map implies when --format is auto."""
    if {"response_a", "response_b", "chosen", "rejected"} & set(keys):
        return "pairs"
    if {"drafts", "ranks", "rankings"} & set(keys):
        return "rankings"
    if {"criterion", "verdict"} & set(keys):
        return "criteria"
    return "ratings"


def parse_map(text: str, shape: str, label_values: str | None = None, scale: str | None = None) -> Mapping:
    """`--map TARGET=COL,...` for a shape (see TARGETS); exit-2 UsageError naming the bad part."""
    pairs: list[tuple[str, str]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        target, eq, col = (s.strip() for s in part.partition("="))
        if not eq or not target or not col:
            raise UsageError(f"--map: {part!r} is not TARGET=COLUMN (e.g. --map prompt=question,response=answer)")
        pairs.append((target, col))
    if not pairs:
        raise UsageError("--map: empty; give TARGET=COLUMN pairs, e.g. --map prompt=question,response=answer")
    fields: dict[str, str] = {}
    open_: dict[str, str] = {}
    for target, col in pairs:
        if target in fields or target in open_:
            raise UsageError(f"--map: target {target!r} is given twice")
        if target in TARGETS[shape]:
            fields[target] = col
        elif shape in OPEN and re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,63}", target):
            open_[target] = col
        elif shape in OPEN:
            raise UsageError(f"--map: {shape} {OPEN[shape]} name {target!r}: use letters, digits, '_', '-' or '.' (starting with a letter)")
        else:
            raise UsageError(f"--map: unknown target {target!r} for --format {shape} (targets: {', '.join(TARGETS[shape])})")
    _check_required(shape, fields, open_)
    values = parse_label_values(label_values, shape) if label_values else None
    scales = parse_scale(scale) if scale else None
    if scales and shape != "ratings":
        raise UsageError(f"--scale goes with --format ratings (--format {shape} has no rating scale to set)")
    unknown = [a for a in (scales or {}) if a != "*" and a not in open_ and "attribute" not in fields]
    if unknown:
        raise UsageError(f"--scale: attribute {unknown[0]!r} is not in --map (attributes: {', '.join(open_)})")
    return Mapping(shape, fields, open_, values, scales,
                   text=" ".join(x for x in (f"--map {text}", label_values and f"--label-values {label_values}", scale and f"--scale {scale}") if x))


def _check_required(shape: str, fields: dict, open_: dict) -> None:
    have = ", ".join([*fields, *open_])
    if "prompt" in fields and "context" in fields:
        raise UsageError("--map: give prompt or context, not both (context is the whole conversation before the response)")
    need = None
    if shape == "pairs":
        if "chosen" in fields or "rejected" in fields:
            need = None if {"chosen", "rejected"} <= set(fields) else "chosen and rejected"
            if need is None and {"response_a", "response_b", "label", "strength"} & set(fields):
                raise UsageError("--map: pairs take chosen + rejected, or response_a + response_b + label (or strength), not both")
        elif not {"response_a", "response_b"} <= set(fields):
            need = "response_a and response_b (or chosen and rejected)"
        elif not {"label", "strength"} & set(fields):
            need = "label (with --label-values) or strength"
        elif {"label", "strength"} <= set(fields):
            raise UsageError("--map: give label or strength, not both")
    elif shape == "rankings":
        if "drafts" not in fields:
            need = "drafts (a list of responses)"
        elif len({"ranks", "rankings"} & set(fields)) != 1:
            need = "ranks (one ranking per record) or rankings (a list of them), one of the two"
    elif shape == "ratings":
        if fields.keys() & {"attribute", "score"} and not {"attribute", "score"} <= fields.keys():
            need = "attribute and score together (long form)"
        elif not open_ and "attribute" not in fields:
            need = "at least one ATTRIBUTE=COLUMN (or attribute=COL,score=COL)"
        elif open_ and "attribute" in fields:
            raise UsageError("--map: give ATTRIBUTE=COLUMN targets or attribute + score, not both")
    elif shape == "criteria":
        if fields.keys() & {"criterion", "verdict"} and not {"criterion", "verdict"} <= fields.keys():
            need = "criterion and verdict together (long form)"
        elif not open_ and "criterion" not in fields:
            need = "at least one CRITERION=COLUMN (or criterion=COL,verdict=COL)"
        elif open_ and "criterion" in fields:
            raise UsageError("--map: give CRITERION=COLUMN targets or criterion + verdict, not both")
    if need is None and shape in ("pairs", "rankings") and not {"prompt", "context"} & set(fields):
        need = "prompt or context"
    if need is None and shape in ("ratings", "criteria") and "response" not in fields and "context" not in fields:
        need = "response (or a context whose last turn is the assistant's response)"
    if need:
        raise UsageError(f"--map: --format {shape} needs {need}; got {have}")


def _value_text(v) -> str:
    """A scalar as the text --label-values matches: 1, 1.0 and "1" all read "1"."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, str):
        t = v.strip()
        return str(int(float(t))) if re.fullmatch(r"-?\d+\.0*", t) else t
    raise ValueError(f"expected a single value, got {'a list' if isinstance(v, list) else 'an object'}")


_VALUE_RULES = {
    "pairs": ({1.0, 2.0, 0.0}, "a pairs label maps to 1 (response A better), 2 (B better) or 0 (tie)"),
    "criteria": ({1.0, 0.0}, "a criteria verdict maps to 1 (yes, fulfilled) or 0 (no)"),
    "rankings": (None, "a rank is a positive integer (1 = best)"),
    "ratings": (None, "a rating maps to a number"),
}


def parse_label_values(text: str, shape: str) -> dict[str, float]:
    """`--label-values VALUE=N,...`: the source's values -> the shape's numbers."""
    allowed, rule = _VALUE_RULES[shape]
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        value, eq, num = (s.strip() for s in part.rpartition("="))
        if not eq or not value or not num:
            raise UsageError(f"--label-values: {part!r} is not VALUE=NUMBER (e.g. --label-values a=1,b=2,tie=0)")
        try:
            n = float(num)
        except ValueError:
            raise UsageError(f"--label-values: {part!r}: {num!r} is not a number; {rule}") from None
        if (allowed is not None and n not in allowed) or (shape == "rankings" and (n < 1 or not n.is_integer())) or not math.isfinite(n):
            raise UsageError(f"--label-values: {part!r}: {rule}")
        key = _value_text(value)
        if key in out:
            raise UsageError(f"--label-values: value {value!r} is given twice")
        out[key] = n
    if not out:
        raise UsageError("--label-values: empty; give VALUE=NUMBER pairs, e.g. --label-values a=1,b=2,tie=0")
    return out


_RANGE = re.compile(r"(-?\d+(?:\.\d+)?)\s*(?:\.\.|-|:)\s*(-?\d+(?:\.\d+)?)")


def parse_scale(text: str) -> dict[str, tuple[float, float]]:
    """`--scale LO-HI` (every attribute) or `--scale ATTRIBUTE=LO-HI,...`; LO..HI works too."""
    out: dict[str, tuple[float, float]] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        attr, eq, rng = part.rpartition("=") if "=" in part else ("*", "", part)
        m = _RANGE.fullmatch(rng.strip())
        if not m or (eq and not attr.strip()):
            raise UsageError(f"--scale: {part!r} is not LO-HI (e.g. --scale 0-100, --scale 1..5 or --scale overall=1-5,coverage=0-100)")
        lo, hi = float(m.group(1)), float(m.group(2))
        if lo >= hi:
            raise UsageError(f"--scale: {part!r}: the low end must be below the high end")
        out[attr.strip()] = (lo, hi)
    if not out:
        raise UsageError("--scale: empty; e.g. --scale 0-100")
    return out


# --- checks against the file, before any work --------------------------------------------------
def validate(m: Mapping, sample: list[tuple[int, dict]], path: Path) -> None:
    """Every mapped column is in the file; attribute columns hold numbers; the first records'
    label / verdict / rank values are all mapped. UsageError (exit 2) otherwise."""
    seen = list(dict.fromkeys(k for _, rec in sample for k in rec))
    if not seen:
        raise UsageError(f"--map: {path} has no readable record to map (empty file, or nothing parses as JSON/CSV)")
    for target in [*m.fields, *m.open]:
        col = m.column(target)
        if col not in seen:
            raise UsageError(f"--map: column {col!r} (for {target}) is not in {path}; its columns: {', '.join(seen[:30])}")
    for target in m.open if m.shape == "ratings" and not m.values else ():
        col = m.column(target)
        vals = [(ln, r[col]) for ln, r in sample if r.get(col) is not None]
        if vals and not any(_numberish(v) for _, v in vals):
            ln, v = vals[0]
            raise UsageError(f"--map: attribute {target!r} maps column {col!r}, whose values are not numbers ({path}:{ln}: {str(v)[:40]!r}); "
                             f"ratings targets are {', '.join(TARGETS['ratings'])}, any other key names a numeric attribute")
    for target, allowed in _checked_values(m):
        col = m.column(target)
        fold = m.values is None and m.shape == "criteria"  # the default yes/no words match in any case
        for ln, rec in sample:
            try:
                vals = _flat(rec.get(col))
            except (ValueError, orjson.JSONDecodeError):
                continue  # a malformed record: its reader quarantines it
            for v in vals:
                if m.shape == "rankings" and _numberish(v):
                    continue  # numeric ranks need no mapping
                key = _value_text(v)
                if (key.lower() if fold else key) not in allowed:
                    mapped = ", ".join(allowed) if m.values else "the defaults " + ", ".join(allowed)
                    hint = {"pairs": f"{key}=1, {key}=2 or {key}=0", "criteria": f"{key}=1 or {key}=0"}.get(m.shape, f"{key}=RANK")
                    raise UsageError(f"--label-values: {path}:{ln}: field '{col}' has value {key!r}, which is not mapped (mapped: {mapped}); "
                                     f"add {hint}")


def _numberish(v) -> bool:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return True
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _checked_values(m: Mapping) -> list[tuple[str, list[str]]]:
    """(target, allowed value texts) whose values must be mapped."""
    if m.shape == "pairs" and "label" in m.fields:
        return [("label", list(m.values or {"1": 1, "2": 2, "0": 0}))]
    if m.shape == "criteria":
        allowed = list(m.values or _YES)
        return [("verdict", allowed)] if m.long else [(t, allowed) for t in m.open]
    if m.shape == "rankings" and m.values:
        return [("ranks" if "ranks" in m.fields else "rankings", list(m.values))]
    return []


def _flat(v) -> list:
    """Scalar values of a label / verdict / rank field (rank lists flattened, in order; a loop,
    not recursion, so that a list nested 1,000 deep is only a bad value)."""
    out: list = []
    stack = [v]
    while stack:
        v = stack.pop()
        if v is None:
            continue
        if isinstance(v, str) and v.strip().startswith("["):
            v = orjson.loads(v)
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            stack.extend(reversed(v))
        else:
            out.append(v)
    return out


# --- typed columns from the raw ones ----------------------------------------------------------
def _turns(v) -> list[dict]:
    if isinstance(v, str):
        if not v.strip().startswith("["):
            return [{"role": "user", "content": v}]
        try:
            v = orjson.loads(v)  # a CSV cell holding JSON
        except orjson.JSONDecodeError:
            raise ValueError("text starting with '[' is not a JSON list of turns") from None
    if not isinstance(v, list) or not v:
        raise ValueError("expected a non-empty list of {role, content} turns (or a string)")
    out = []
    for i, t in enumerate(v):
        role = t.get("role", t.get("from")) if isinstance(t, dict) else None
        content = t.get("content", t.get("value")) if isinstance(t, dict) else None
        if not isinstance(role, str) or not isinstance(content, str):
            raise ValueError(f"turn {i}: needs a string role (or from) and content (or value)")
        out.append({"role": _ROLES.get(role.lower(), role.lower()), "content": content})
    return out


def _json_list(v, what: str) -> list:
    if isinstance(v, str) and v.strip().startswith("["):
        try:
            v = orjson.loads(v)
        except orjson.JSONDecodeError:
            raise ValueError(f"text starting with '[' is not a JSON list of {what}") from None
    if not isinstance(v, list):
        raise ValueError(f"expected a list of {what}")
    return v


def _drafts(v) -> list[str]:
    v = _json_list(v, "responses")
    for i, d in enumerate(v):
        if not isinstance(d, str):
            raise ValueError(f"draft {i}: expected a string, got {type(d).__name__ if d is not None else 'null'}")
    return v


def _rank(v, values: dict | None) -> float:
    if values is not None and not isinstance(v, (list, dict)) and _value_text(v) in values:
        return values[_value_text(v)]
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    if values is None:
        raise ValueError(f"rank {v!r} is not a number (map text ranks with --label-values VALUE=1,...)")
    raise ValueError(f"rank {v!r} is not mapped by --label-values")


def _ranks(v, values) -> list[float]:
    return [_rank(x, values) for x in _json_list(v, "ranks")]


def _rankings(v, values) -> tuple[list[list[float]], list[str] | None]:
    """A list of rank lists (anonymous annotators) or {annotator: rank list}."""
    if isinstance(v, str) and v.strip().startswith(("[", "{")):
        v = orjson.loads(v)
    if isinstance(v, dict):
        return [_ranks(r, values) for r in v.values()], [str(k) for k in v]
    ranks = [_ranks(r, values) for r in _json_list(v, "rankings")]
    return ranks, [None] * len(ranks)


def _rating(v, values: dict) -> float:
    key = _value_text(v)
    if key in values:
        return values[key]
    if _numberish(v) and math.isfinite(float(v)):
        return float(v)
    raise ValueError(f"value {key!r} is not mapped by --label-values (mapped: {', '.join(values)})")


def _one(v, kind: str, col: str, values):
    """One raw value read as `kind` (None stays None); ValueError / RecordError when it cannot be."""
    if v is None:
        return None, None
    if kind == "text":
        return check_value(v, pl.String, col), None
    if kind == "number":
        return check_value(v, pl.Float64, col, coerce_strings=True), None
    if kind == "rating":
        return _rating(v, values), None
    if kind == "key":
        return _value_text(v), None
    if kind == "turns":
        return _turns(v), None
    if kind == "drafts":
        return _drafts(v), None
    if kind == "ranks":
        return _ranks(v, values), None
    return _rankings(v, values)


def _convert(raw: pl.Series, kind: str, col: str, values) -> tuple[pl.Series, pl.Series, pl.Series | None]:
    """(typed values, error reasons, annotator names for `rankings`) of one raw column."""
    if (kind == "text" and raw.dtype == pl.String) or (kind == "number" and raw.dtype == pl.Float64):
        return raw, pl.Series([None] * len(raw), dtype=pl.String), None
    out, errs, names = [], [], []
    for v in raw.to_list():
        val, name, err = None, None, None
        try:
            val, name = _one(v, kind, col, values)
        except RecordError as e:
            err = e.reason
        except (ValueError, orjson.JSONDecodeError) as e:
            err = f"field '{col}': {e}"
        out.append(val)
        names.append(name)
        errs.append(err)
    dtype = {"text": pl.String, "number": pl.Float64, "rating": pl.Float64, "key": pl.String, "turns": CONTEXT, "drafts": pl.List(pl.String),
             "ranks": pl.List(pl.Float64), "rankings": pl.List(pl.List(pl.Float64))}[kind]
    names_s = pl.Series(names, dtype=pl.List(pl.String)) if kind == "rankings" else None
    return pl.Series(out, dtype=dtype), pl.Series(errs, dtype=pl.String), names_s


def _prepare(df: pl.DataFrame, m: Mapping) -> pl.DataFrame:
    """A frame with one typed column per target (open ones prefixed), `_err` (the first value
    error of the record), `context` (list of turns) and, for a conversation, `response`."""
    cols: dict[str, pl.Series] = {"_line": df["_line"]}
    errs: list[pl.Series] = []
    for target in [*m.fields, *m.open]:
        values, err, names = _convert(df[m.column(target)], m.kind(target), m.column(target), m.values)
        # the item id is `_src_id`: `id` is the response id column of with_response_ids
        cols[{"id": "_src_id"}.get(target, target) if target in m.fields else _OPEN_PREFIX + target] = values
        errs.append(err)
        if names is not None:
            cols["_names"] = names
    t = pl.DataFrame(cols).with_columns(pl.coalesce(errs).alias("_err") if errs else pl.lit(None, dtype=pl.String).alias("_err"))
    if "prompt" in t.columns:
        return t.with_columns(user_context("prompt").alias("context"))
    if m.shape in ("ratings", "criteria") and "response" not in m.fields:
        # a whole conversation: its last (assistant) turn is the response
        last = pl.col("context").list.last()
        t = t.with_columns(pl.when(last.struct.field("role") == "assistant").then(last.struct.field("content")).alias("response"),
                           (last.struct.field("role") == "assistant").alias("_ends"))
        return t.with_columns(pl.when(pl.col("_ends")).then(pl.col("context").list.slice(0, pl.col("context").list.len() - 1)).otherwise(pl.col("context")).alias("context"))
    return t


def _base_checks(m: Mapping, responses: tuple[str, ...]) -> list[tuple[pl.Expr, pl.Expr]]:
    checks = [(pl.col("_err").is_not_null(), pl.col("_err"))]
    src = m.column("prompt" if "prompt" in m.fields else "context")
    missing = pl.col("prompt").is_null() if "prompt" in m.fields else pl.col("context").is_null()
    checks.append((missing, pl.lit(f"field '{src}': missing or null")))
    if "context" in m.fields and m.shape in ("ratings", "criteria") and "response" not in m.fields:
        checks.append((~pl.col("_ends"), pl.lit(f"field '{src}': the conversation does not end with an assistant turn (map response=COL for the response)")))
    checks.append((pl.col("context").list.len() == 0, pl.lit(f"field '{src}': empty conversation (the response needs a user turn before it)")))
    for r in responses:
        checks.append((pl.col(r).is_null(), pl.lit(f"field '{m.column(r)}': missing or null")))
    return checks


def _meta(t: pl.DataFrame, ctx: Ctx, model: str | None = None) -> dict:
    meta = {"split": pl.col("split").fill_null(pl.lit(ctx.split, dtype=pl.String)) if "split" in t.columns else pl.lit(ctx.split, dtype=pl.String)}
    for name in ("domain", "language"):
        if name in t.columns:
            meta[name] = pl.col(name)
    if model and model in t.columns:
        meta["model"] = pl.col(model)
    return meta


def _annotator(t: pl.DataFrame) -> pl.Expr:
    return (pl.col("annotator") if "annotator" in t.columns else pl.lit(None, dtype=pl.String)).alias("annotator_id")


def _opt(t: pl.DataFrame, col: str) -> pl.Expr:
    return (pl.col(col) if col in t.columns else pl.lit(None, dtype=pl.String)).alias(col)


def _item_prefix(ctx: Ctx) -> str:
    """Pair / item ids from a mapped `id` column: `<file stem>:<id>`, stable across re-ingests."""
    return Path(ctx.source).name.split(".")[0]


# --- pairs ------------------------------------------------------------------------------------
def _norm_pairs(df: pl.DataFrame, ctx: Ctx, m: Mapping) -> Result:
    res = Result()
    t = _prepare(df, m)
    a, b = ("chosen", "rejected") if "chosen" in m.fields else ("response_a", "response_b")
    checks = _base_checks(m, (a, b)) + [(pl.col(a) == pl.col(b), pl.lit(f"field '{m.column(b)}': identical to '{m.column(a)}'"))]
    if "label" in m.fields:
        strength = {k: _LABELS[v] for k, v in (m.values or {"1": 1.0, "2": 2.0, "0": 0.0}).items()}
        t = t.with_columns(pl.col("label").replace_strict(strength, default=None, return_dtype=pl.Float64).alias("strength"))
        mapped = ", ".join(strength)
        checks += [(pl.col("label").is_null(), pl.lit(f"field '{m.column('label')}': missing or null")),
                   (pl.col("strength").is_null(), pl.format(f"field '{m.column('label')}': value '{{}}' is not mapped by --label-values (mapped: {mapped})", pl.col("label")))]
    elif "strength" in m.fields:
        s = pl.col("strength")
        checks += [(s.is_null(), pl.lit(f"field '{m.column('strength')}': missing or null")),
                   (~s.is_finite() | (s.abs() > 3), pl.format(f"field '{m.column('strength')}': strength {{}} is not in -3..3 (negative = response A better)", s))]
    else:
        t = t.with_columns(pl.lit(-1.0).alias("strength"))  # chosen is response A: a gold direction
    t, bad = split_reasons(t, checks)
    res.reject(bad["_line"], bad["reason"])
    if t.height == 0:
        return res
    t = with_response_ids(with_response_ids(t, "context", a, "a_"), "context", b, "b_")
    pair_id = (pl.format(f"{_item_prefix(ctx)}:{{}}", "_src_id") if "_src_id" in t.columns else
               pl.lit(content_pair_id("pairs", t["a_id"], t["b_id"])))
    res.add("responses", responses_from(t, context="context", response=a, id_col="a_id", prompt_id_col="a_prompt_id", source=ctx.source, meta=_meta(t, ctx, "model_a")))
    res.add("responses", responses_from(t, context="context", response=b, id_col="b_id", prompt_id_col="b_prompt_id", source=ctx.source, meta=_meta(t, ctx, "model_b")))
    res.add("preferences", t.select(
        pair_id.alias("pair_id"), pl.col("a_prompt_id").alias("prompt_id"), pl.col("a_id").alias("response_a_id"), pl.col("b_id").alias("response_b_id"),
        _annotator(t), "strength", _opt(t, "justification"), _opt(t, "subset"), pl.lit([], dtype=pl.List(pl.String)).alias("flags"),
        pl.lit(ctx.source).alias("source"), "_line"))
    return res


# --- ratings ----------------------------------------------------------------------------------
def _scale_of(m: Mapping, attr: str) -> tuple[float, float] | None:
    return None if m.scale is None else m.scale.get(attr, m.scale.get("*"))


def _record_scales(ctx: Ctx, scales: dict[str, tuple[float, float]]) -> None:
    ctx.shared.setdefault("scales", {}).update({a: [lo, hi] for a, (lo, hi) in scales.items()})


def _checked(df: pl.DataFrame, m: Mapping) -> tuple[Result, pl.DataFrame]:
    """The mapped records with the checks every response-level shape shares applied (rejects kept)."""
    res = Result()
    t = _prepare(df, m)
    t, bad = split_reasons(t, _base_checks(m, ("response",)))
    res.reject(bad["_line"], bad["reason"])
    return res, t


def _one_row_per_name(t: pl.DataFrame, m: Mapping, res: Result, key: str, value: str, source_key: str,
                      long_extra: tuple = (), wide_extra: tuple = ()) -> pl.DataFrame:
    """One row per (record, attribute or criterion): the long layout's `key`/`value` columns as they are
    (a row with a value but no name is rejected), or the wide layout's open columns unpivoted. `_col`
    is the source column, for the reasons."""
    if m.long:
        long = t.select("_line", pl.col(source_key).alias(key), value, *long_extra, pl.lit(m.column(value)).alias("_col"))
        unnamed = long.filter(pl.col(key).is_null() & pl.col(value).is_not_null())
        res.reject(unnamed["_line"], pl.Series([f"field '{m.column(source_key)}': missing or null"] * unnamed.height, dtype=pl.String))
        return long.filter(~pl.col("_line").is_in(unnamed["_line"].implode()))
    names = {_OPEN_PREFIX + a: a for a in m.open}
    return t.select("_line", *names).unpivot(index="_line", variable_name=key, value_name=value).with_columns(
        pl.col(key).replace_strict(names, return_dtype=pl.String),
        pl.col(key).replace_strict({k: m.open[a] for k, a in names.items()}, return_dtype=pl.String).alias("_col"), *wide_extra)


def _norm_ratings(df: pl.DataFrame, ctx: Ctx, m: Mapping) -> Result:
    res, t = _checked(df, m)
    if t.height == 0:
        return res
    long = _one_row_per_name(t, m, res, "attribute", "score", "attribute")
    s = pl.col("score")
    # each attribute's --scale (lo, hi and its text for reasons); attributes without one are not range-checked
    scales = [(a, *sc, f"{sc[0]:g}-{sc[1]:g}") for a in long["attribute"].unique().drop_nulls().to_list() if (sc := _scale_of(m, a))]
    long = long.join(pl.DataFrame(scales, schema={"attribute": pl.String, "_lo": pl.Float64, "_hi": pl.Float64, "_scale": pl.String}, orient="row"),
                     on="attribute", how="left")
    wrong = long.filter(s.is_not_null() & (~s.is_finite() | (s < pl.col("_lo")).fill_null(False) | (s > pl.col("_hi")).fill_null(False)))
    if wrong.height:
        first = wrong.group_by("_line", maintain_order=True).first()
        reason = pl.when(~s.is_finite()).then(pl.format("field '{}': rating {} is not a finite number", "_col", s)).otherwise(
            pl.format("field '{}': rating {} is outside --scale {}", "_col", s, "_scale"))
        res.reject(first["_line"], first.select(reason.alias("r"))["r"])
    rated = long.filter(s.is_not_null())["_line"].unique()
    unrated = t.filter(~pl.col("_line").is_in(rated.implode()))["_line"]
    cols = ", ".join(m.open.values()) if not m.long else m.column("score")
    res.reject(unrated, pl.Series([f"fields {cols}: no rating (all null)"] * len(unrated), dtype=pl.String))
    drop = pl.concat([wrong["_line"], unrated]).implode()
    t = t.filter(~pl.col("_line").is_in(drop))
    long = long.filter(s.is_not_null() & ~pl.col("_line").is_in(drop))
    if t.height == 0:
        return res
    t = with_response_ids(t, "context", "response", "")
    res.add("responses", responses_from(t, context="context", response="response", id_col="id", prompt_id_col="prompt_id", source=ctx.source, meta=_meta(t, ctx, "model")))
    rows = long.join(t.select("_line", pl.col("id").alias("response_id"), _annotator(t)), on="_line", how="inner")
    res.add("ratings", rows.select("response_id", "annotator_id", "attribute", pl.col("score").cast(pl.Float64), pl.lit(ctx.source).alias("source"), "_line"))
    _record_scales(ctx, {a: sc for a in rows["attribute"].unique().to_list() if (sc := _scale_of(m, a))})
    return res


# --- rankings ---------------------------------------------------------------------------------
def _combos(ns) -> pl.DataFrame:
    """Every pair (i < j) of draft positions, for each number of drafts n."""
    rows = [(n, i, j) for n in ns for i in range(n) for j in range(i + 1, n)]
    return pl.DataFrame(rows, schema={"n": pl.UInt32, "i": pl.Int64, "j": pl.Int64}, orient="row")


def ranking_pairs(res: Result, t: pl.DataFrame, rankings: pl.DataFrame, ctx: Ctx) -> Result:
    """Preference votes from rankings. `t`, one row per item: `_line`, `_item` (item id),
    `context`, `drafts` (list of responses), optional meta (`split`, `domain`, `model`: one value
    or one per draft); `rankings`, one row per ranking: `_line`, `_rk`
    (list of ranks, 1 = best) and `_ann` (who ranked). Every pair of drafts i < j gets one vote
    per ranking: -1 when draft i ranks better, +1 when worse, 0 when tied; pair id `<item>:<i>-<j>`."""
    per_draft = [c for c in _meta_cols(t) if isinstance(t.schema[c], pl.List)]  # e.g. one model per draft
    drafts = t.select("_line", "context", pl.col("drafts"), pl.int_ranges(pl.col("drafts").list.len()).alias("k"), *_meta_cols(t)).explode("drafts", "k", *per_draft)
    drafts = with_response_ids(drafts, "context", "drafts", "")
    res.add("responses", responses_from(drafts, context="context", response="drafts", id_col="id", prompt_id_col="prompt_id", source=ctx.source, meta=_meta(drafts, ctx, "model")))
    ids = drafts.select("_line", "k", "id", "prompt_id")
    n = t.select("_line", "_item", _opt(t, "subset"), pl.col("drafts").list.len().cast(pl.UInt32).alias("n"))
    pairs = n.join(_combos(n["n"].unique().to_list()), on="n").join(ids.rename({"k": "i", "id": "a_id"}), on=["_line", "i"]).join(
        ids.rename({"k": "j", "id": "b_id"}).drop("prompt_id"), on=["_line", "j"])
    votes = rankings.select("_line", "_rk", "_ann").join(pairs, on="_line")
    ri, rj = pl.col("_rk").list.get(pl.col("i")), pl.col("_rk").list.get(pl.col("j"))
    res.add("preferences", votes.select(
        pl.format("{}:{}-{}", "_item", "i", "j").alias("pair_id"), "prompt_id", pl.col("a_id").alias("response_a_id"), pl.col("b_id").alias("response_b_id"),
        pl.col("_ann").alias("annotator_id"), (ri - rj).sign().cast(pl.Float64).alias("strength"), pl.lit(None, dtype=pl.String).alias("justification"),
        "subset", pl.lit([], dtype=pl.List(pl.String)).alias("flags"), pl.lit(ctx.source).alias("source"), "_line"))
    return res


def _meta_cols(t: pl.DataFrame) -> list[str]:
    return [c for c in ("split", "domain", "language", "model") if c in t.columns]


def _norm_rankings(df: pl.DataFrame, ctx: Ctx, m: Mapping) -> Result:
    res = Result()
    t = _prepare(df, m)
    dcol = m.column("drafts")
    d = pl.col("drafts")
    checks = _base_checks(m, ("drafts",)) + [
        (d.list.len() < 2, pl.format(f"field '{dcol}': {{}} draft(s); a ranking needs at least 2", d.list.len())),
        (d.list.n_unique() < d.list.len(), pl.lit(f"field '{dcol}': two drafts are identical")),
    ]
    if "ranks" in m.fields:
        rk = pl.col("ranks")
        checks.append((rk.is_null(), pl.lit(f"field '{m.column('ranks')}': missing or null")))
        checks.append((rk.list.len() != d.list.len(), pl.format(f"field '{m.column('ranks')}': {{}} ranks for {{}} drafts", rk.list.len(), d.list.len())))
    else:
        rk = pl.col("rankings")
        lens = rk.list.eval(pl.element().list.len())
        checks.append((rk.is_null() | (rk.list.len() == 0), pl.lit(f"field '{m.column('rankings')}': missing or empty")))
        checks.append(((lens.list.min() != d.list.len()) | (lens.list.max() != d.list.len()),
                       pl.lit(f"field '{m.column('rankings')}': every ranking needs one rank per draft")))
    t, bad = split_reasons(t, checks)
    res.reject(bad["_line"], bad["reason"])
    if t.height == 0:
        return res
    key = hash_series(t.select(context_key_expr("context").alias("k"))["k"], t["drafts"].list.join("\x1d"))
    t = t.with_columns((pl.format(f"{_item_prefix(ctx)}:{{}}", "_src_id") if "_src_id" in t.columns else pl.lit(key)).alias("_item"))
    if "ranks" in m.fields:  # one ranking per record, by its annotator (null: a gold ranking)
        rankings = t.select("_line", pl.col("ranks").alias("_rk"), _annotator(t).alias("_ann"))
    else:  # {annotator: ranks}, or a list of anonymous rankings: anon:<item>:<k>, the contract's id for votes without identities
        rankings = t.select("_line", "_item", pl.col("rankings").alias("_rk"), "_names", pl.int_ranges(pl.col("rankings").list.len()).alias("k"))
        rankings = rankings.explode("_rk", "_names", "k").select("_line", "_rk", pl.coalesce("_names", pl.format("anon:{}:{}", "_item", "k")).alias("_ann"))
    return ranking_pairs(res, t, rankings, ctx)


# --- binary criteria --------------------------------------------------------------------------
def slug_expr(col: str) -> pl.Expr:
    """An attribute name from a criterion: lower case, runs of other characters as '_', 64 at most."""
    s = pl.col(col).str.to_lowercase().str.replace_all(r"[^a-z0-9]+", "_").str.strip_chars("_").str.slice(0, 64)
    return pl.when(s == "").then(pl.lit("criterion")).otherwise(s)


def _norm_criteria(df: pl.DataFrame, ctx: Ctx, m: Mapping) -> Result:
    res, t = _checked(df, m)
    if t.height == 0:
        return res
    long = _one_row_per_name(t, m, res, "principle", "verdict", "criterion", long_extra=(_opt(t, "explanation"),),
                             wide_extra=(pl.lit(None, dtype=pl.String).alias("explanation"),))
    yes = m.values or _YES
    long = long.with_columns(pl.col("verdict").str.to_lowercase().replace_strict({k.lower(): v for k, v in yes.items()}, default=None, return_dtype=pl.Float64).alias("fulfilment")
                             if m.values is None else pl.col("verdict").replace_strict(yes, default=None, return_dtype=pl.Float64).alias("fulfilment"))
    wrong = long.filter(pl.col("verdict").is_not_null() & pl.col("fulfilment").is_null()).group_by("_line", maintain_order=True).first()
    res.reject(wrong["_line"], wrong.select(pl.format("field '{}': verdict {} is not yes/no (map it: --label-values {}=1 or {}=0)", "_col", "verdict", "verdict", "verdict").alias("r"))["r"])
    judged = long.filter(pl.col("fulfilment").is_not_null())["_line"].unique()
    unjudged = t.filter(~pl.col("_line").is_in(judged.implode()) & ~pl.col("_line").is_in(wrong["_line"].implode()))["_line"]
    cols = m.column("verdict") if m.long else ", ".join(m.open.values())
    res.reject(unjudged, pl.Series([f"fields {cols}: no verdict (all null)"] * len(unjudged), dtype=pl.String))
    drop = pl.concat([wrong["_line"], unjudged]).implode()
    t = t.filter(~pl.col("_line").is_in(drop))
    long = long.filter(pl.col("fulfilment").is_not_null() & ~pl.col("_line").is_in(drop))
    if t.height == 0:
        return res
    t = with_response_ids(t, "context", "response", "")
    res.add("responses", responses_from(t, context="context", response="response", id_col="id", prompt_id_col="prompt_id", source=ctx.source, meta=_meta(t, ctx, "model")))
    return add_criteria(res, t.select("_line", pl.col("id").alias("response_id"), _annotator(t)), long, ctx)


def add_criteria(res: Result, ids: pl.DataFrame, verdicts: pl.DataFrame, ctx: Ctx, attribute: pl.Expr | None = None) -> Result:
    """Principles (one row per verdict, with its explanation) plus the same verdicts as 0/1
    ratings per criterion (attribute = slug of the criterion), so `analyze` measures agreement.
    ids: `_line`, `response_id`, `annotator_id`; verdicts: `_line`, `principle`, `fulfilment`, `explanation`."""
    rows = verdicts.join(ids, on="_line", how="inner")
    res.add("principles", rows.select("response_id", "annotator_id", "principle", "fulfilment", "explanation", pl.lit(ctx.source).alias("source"), "_line"))
    attr = attribute if attribute is not None else slug_expr("principle")
    rated = rows.select("response_id", "annotator_id", attr.alias("attribute"), pl.col("fulfilment").alias("score"), pl.lit(ctx.source).alias("source"), "_line")
    res.add("ratings", rated)
    _record_scales(ctx, {a: (0.0, 1.0) for a in rated["attribute"].unique().to_list()})
    return res


# --- a --map line to edit, for a file no reader knows -----------------------------------------
_NAMES = {
    "context": ("messages", "conversation", "turns", "dialog", "chat", "history"),
    "prompt": ("prompt", "instruction", "input", "question", "query", "task", "context", "source_text", "request"),
    "response": ("response", "output", "answer", "completion", "reply", "summary", "story", "generation", "text", "candidate"),
    "label": ("label", "winner", "preference", "choice", "better", "pick", "vote", "judgment", "judgement", "gold"),
    "annotator": ("annotator", "worker", "rater", "judge", "labeler", "reviewer", "expert", "user_id", "annotator_id"),
    "criterion": ("criterion", "criteria", "principle", "question_id", "test", "rubric"),
    "verdict": ("verdict", "fulfilment", "fulfillment", "passed", "pass", "satisfied"),
}
_PAIR_SUFFIX = re.compile(r"(?i)^(.*?)[_\- ]?(1|2|a|b|x|y|left|right)$")


def _kind_of(values: list) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "null"
    if all(isinstance(v, bool) or (isinstance(v, str) and v.strip().lower() in ("yes", "no", "true", "false")) for v in vals):
        return "yesno"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals) or all(isinstance(v, str) and _numberish(v) for v in vals):
        return "number"
    if all(isinstance(v, str) for v in vals):
        return "text"
    if all(isinstance(v, list) for v in vals):
        inner = [x for v in vals for x in v]
        if inner and all(isinstance(x, dict) and ({"role", "content"} <= x.keys() or {"from", "value"} <= x.keys()) for x in inner):
            return "turns"
        if inner and all(isinstance(x, str) for x in inner):
            return "list_text"
        if inner and all(isinstance(x, (int, float, list, str)) for x in inner):
            return "list_rank"
    return "other"


def _named(cols: list[str], role: str, exclude=()) -> str | None:
    words = _NAMES[role]
    for w in words:  # exact names first, then names containing the word
        for c in cols:
            if c not in exclude and c.lower() == w:
                return c
    for w in words:
        for c in cols:
            if c not in exclude and w in c.lower():
                return c
    return None


def suggest_map(sample: list[dict]) -> str:
    """A ready `--format SHAPE --map ...` line for a file's records, guessed from the column
    names and values; the user edits it. Deterministic for the same records."""
    cols = list(dict.fromkeys(k for r in sample for k in r))
    kinds = {c: _kind_of([r.get(c) for r in sample]) for c in cols}
    texts = [c for c in cols if kinds[c] == "text"]
    conv = next((c for c in cols if kinds[c] == "turns"), None)
    head = f"context={conv}" if conv else None
    prompt = None if conv else _named(texts, "prompt")
    if prompt:
        head = f"prompt={prompt}"
    rest_text = [c for c in texts if c != prompt]
    annot = _named([c for c in cols if kinds[c] in ("text", "number")], "annotator")
    tail = [f"annotator={annot}"] if annot else []
    lead = [head] if head else ["prompt=COL"]
    # rankings: a list of responses and rank lists
    drafts = next((c for c in cols if kinds[c] == "list_text"), None)
    ranks = next((c for c in cols if kinds[c] == "list_rank"), None)
    if drafts and ranks:
        nested = any(isinstance(x, list) for r in sample for x in (r.get(ranks) or []))
        return f"--format rankings --map {','.join(lead + [f'drafts={drafts}', ('rankings' if nested else 'ranks') + f'={ranks}'] + tail)}"
    # pairs: two text columns named alike (output_1/output_2, response_a/response_b, chosen/rejected)
    pair = _pair_columns(rest_text)
    if pair:
        label = _named([c for c in cols if c not in (*pair, prompt, annot) and kinds[c] in ("text", "number", "yesno")], "label")
        if label is None:
            return f"--format pairs --map {','.join(lead + [f'response_a={pair[0]}', f'response_b={pair[1]}', 'label=COL'] + tail)} --label-values VALUE=1,VALUE=2"
        seen = list(dict.fromkeys(_value_text(r[label]) for r in sample if r.get(label) is not None and not isinstance(r[label], (list, dict))))
        if set(seen) <= {"1", "2", "0"}:
            values = ",".join(f"{v}={v}" for v in sorted(seen, key=lambda v: ("120".index(v))))
        else:
            values = ",".join(f"{v}={n}" for v, n in zip(seen[:3], (1, 2, 0)))
        return f"--format pairs --map {','.join(lead + [f'response_a={pair[0]}', f'response_b={pair[1]}', f'label={label}'] + tail)} --label-values {values}"
    response = _named(rest_text, "response") or (max(rest_text, key=lambda c: sum(len(str(r.get(c) or "")) for r in sample)) if rest_text else None)
    resp = [f"response={response}"] if response else ([] if conv else ["response=COL"])
    # ids are no attributes: id, idx, uid, *_id
    others = [c for c in cols if c not in (prompt, conv, response, annot) and not re.fullmatch(r"(?i)(id|idx|uid|.*_id|.*_idx)", c)]
    # binary criteria: yes/no columns, or one criterion column plus a verdict column
    crit, verdict = _named(others, "criterion"), _named([c for c in others if kinds[c] in ("yesno", "text")], "verdict")
    if crit and verdict and crit != verdict:
        expl = _named([c for c in others if kinds[c] == "text" and c not in (crit, verdict)], "response") or next(
            (c for c in others if kinds[c] == "text" and c not in (crit, verdict) and "explan" in c.lower()), None)
        extra = [f"explanation={expl}"] if expl else []
        return f"--format criteria --map {','.join(lead + resp + [f'criterion={crit}', f'verdict={verdict}'] + extra + tail)}"
    yesno = [c for c in others if kinds[c] == "yesno"]
    if yesno:
        return f"--format criteria --map {','.join(lead + resp + [f'{_target_name(c)}={c}' for c in yesno] + tail)}"
    numbers = [c for c in others if kinds[c] == "number"]
    if numbers:
        top = max(float(r[c]) for r in sample for c in numbers if r.get(c) is not None and _numberish(r[c]) and math.isfinite(float(r[c])))
        low = min(float(r[c]) for r in sample for c in numbers if r.get(c) is not None and _numberish(r[c]) and math.isfinite(float(r[c])))
        hi = next(h for h in (1, 4, 5, 7, 10, 100, math.inf) if top <= h)
        scale = f" --scale {0 if low < 1 or hi in (4, 100) else 1}-{hi:g}" if math.isfinite(hi) else ""
        return f"--format ratings --map {','.join(lead + resp + [f'{_target_name(c)}={c}' for c in numbers] + tail)}{scale}"
    return f"--format ratings --map {','.join(lead + resp + ['ATTRIBUTE=COL'] + tail)}"


def _target_name(col: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", col).strip("_") or "attribute"
    name = name if name[0].isalpha() else f"a_{name}"
    return name if name not in set(TARGETS["ratings"]) | set(TARGETS["criteria"]) else f"{name}_score"


def _pair_columns(cols: list[str]) -> tuple[str, str] | None:
    lower = {c.lower(): c for c in cols}
    if "chosen" in lower and "rejected" in lower:
        return lower["chosen"], lower["rejected"]
    stems: dict[str, list[str]] = {}
    for c in cols:
        m = _PAIR_SUFFIX.match(c)
        if m and m.group(1):
            stems.setdefault(m.group(1).lower(), []).append(c)
    for group in stems.values():
        if len(group) >= 2:
            return group[0], group[1]
    return None


def from_options(fmt: str, map_text: str | None, label_values: str | None, scale: str | None) -> Mapping | None:
    """The ingest command's --format / --map / --label-values / --scale, checked before any file
    is read: a Mapping, or None when no --map is given."""
    if map_text is None:
        if label_values is not None or scale is not None:
            raise UsageError(f"{'--label-values' if label_values is not None else '--scale'} goes with --map (it describes the mapped columns)")
        if fmt in SHAPES[1:]:
            raise UsageError(f"--format {fmt} reads a file through a column mapping: add --map TARGET=COLUMN,... (README \"Ingest\")")
        return None
    if fmt not in ("auto", *SHAPES):
        raise UsageError(f"--map reads a file as one of the shapes pairs, ratings, rankings or criteria: use --format SHAPE (or auto), not {fmt!r}")
    shape = fmt if fmt != "auto" else infer_shape([p.partition("=")[0].strip() for p in map_text.split(",")])
    return parse_map(map_text, shape, label_values, scale)
