"""Readers for the HelpSteer family: HelpSteer (1), HelpSteer2 (train/validation, disagreements,
preference) and HelpSteer3 (preference, feedback, edit, edit_quality, principle).

Field names follow the Hugging Face dataset cards (../shared/notes/anchors.md). Strength sign is
HelpSteer's: negative = the first response is better. Votes without annotator identities get
`anon:<item id>:<k>` ids."""

from __future__ import annotations

import re

import polars as pl

from ..labels import yes_no
from ..schema import CONTEXT, HELPSTEER_ATTRIBUTES, JSON, TURN
from . import Ctx, Format, register
from .common import (
    Result,
    content_pair_id,
    context_ok,
    int_in_range,
    missing,
    responses_from,
    split_reasons,
    user_context,
    with_response_ids,
)

ATTRS = HELPSTEER_ATTRIBUTES
_MARKER = "<extra_id_1>"
_TURN_RE = re.compile(r"\n?<extra_id_1>(User|Assistant)\n?")


def parse_extra_id_prompt(text: str) -> list[dict]:
    """HelpSteer2 multi-turn prompt -> context turns. The text before the first marker is the
    first user turn; each `<extra_id_1>User` / `<extra_id_1>Assistant` starts the next turn."""
    parts = _TURN_RE.split(text)
    turns = [{"role": "user", "content": parts[0]}] if parts[0] != "" or len(parts) == 1 else []
    for role, content in zip(parts[1::2], parts[2::2]):
        turns.append({"role": role.lower(), "content": content})
    return turns


def prompt_context(df: pl.DataFrame, prompt_col: str = "prompt") -> pl.DataFrame:
    """Add `context` from a HelpSteer2-style prompt string (multi-turn markers become turns).

    Vectorised equivalent of parse_extra_id_prompt: split on the marker; the first part is the
    first user turn (dropped when empty), each later part starts with its role name."""
    has = df[prompt_col].fill_null("").str.contains(_MARKER, literal=True)
    if not has.any():
        return df.with_columns(user_context(prompt_col).alias("context"))
    e = pl.element()
    idx = pl.int_range(pl.len())
    role = pl.when(idx == 0).then(pl.lit("user")).otherwise(e.str.extract(r"^(User|Assistant)", 1).str.to_lowercase())
    body = pl.when(idx == 0).then(e).otherwise(e.str.replace(r"^(?:User|Assistant)\n?", ""))
    # the newline before a marker belongs to the marker; the last part keeps its own
    content = pl.when(idx < pl.len() - 1).then(body.str.strip_suffix("\n")).otherwise(body)
    turns = (
        pl.col(prompt_col)
        .str.split(_MARKER)
        .list.eval(pl.struct(role.alias("role"), content.alias("content")))
        .list.eval(e.filter((pl.int_range(pl.len()) > 0) | (e.struct.field("content") != "") | (pl.len() == 1)))
    )
    return df.with_columns(pl.when(has).then(turns).otherwise(user_context(prompt_col)).cast(CONTEXT).alias("context"))


def _split_expr(df: pl.DataFrame, ctx: Ctx) -> pl.Expr:
    if "split" in df.columns:
        return pl.col("split").fill_null(pl.lit(ctx.split, dtype=pl.String))
    return pl.lit(ctx.split, dtype=pl.String)


def _meta(df: pl.DataFrame, ctx: Ctx) -> dict:
    meta = {"split": _split_expr(df, ctx)}
    for name in ("domain", "language"):
        if name in df.columns:
            meta[name] = pl.col(name)
    return meta


# --- HelpSteer / HelpSteer2: one row per response, aggregated ratings -------------------------
def _norm_ratings(df: pl.DataFrame, ctx: Ctx, per_annotator: bool) -> Result:
    res = Result()
    checks = [missing("prompt"), missing("response")] + [missing(a) for a in ATTRS]
    if per_annotator:
        checks += [(pl.col(a).list.len() == 0, pl.lit(f"field '{a}': no annotator ratings")) for a in ATTRS]
    df, bad = split_reasons(df, checks)
    res.reject(bad["_line"], bad["reason"])
    if df.height == 0:
        return res
    df = with_response_ids(prompt_context(df), "context", "response", "")
    # long form first, then range checks on plain float columns (no per-row list evaluation)
    long = df.select(pl.col("id").alias("response_id"), "_line", *ATTRS).unpivot(
        index=["response_id", "_line"], on=list(ATTRS), variable_name="attribute", value_name="score"
    )
    if per_annotator:
        long = long.with_columns(pl.int_ranges(pl.col("score").list.len()).alias("k")).explode(["score", "k"])
    s = pl.col("score")
    wrong = long.filter(s.is_null() | (s < 0) | (s > 4) | (s != s.round()) | s.is_nan())
    if wrong.height:
        first = wrong.group_by("_line").agg(pl.col("attribute").first(), pl.col("score").first())
        what = "per-annotator ratings" if per_annotator else "rating"
        reason = pl.format(f"field '{{}}': {what} must be integers in 0..4, got {{}}", "attribute", pl.col("score").cast(pl.String).fill_null("null"))
        res.reject(first["_line"], first.select(reason.alias("r"))["r"])
        bad_lines = first["_line"]
        df = df.filter(~pl.col("_line").is_in(bad_lines.implode()))
        long = long.filter(~pl.col("_line").is_in(bad_lines.implode()))
    res.add("responses", responses_from(df, context="context", response="response", id_col="id", prompt_id_col="prompt_id", source=ctx.source, meta=_meta(df, ctx)))
    if per_annotator:
        annotator = pl.concat_str([pl.lit("anon:"), pl.col("response_id"), pl.lit(":"), pl.col("k").cast(pl.String)])
    else:
        annotator = pl.lit(None, dtype=pl.String)
    res.add("ratings", long.select("response_id", annotator.alias("annotator_id"), "attribute", s.cast(pl.Float64), pl.lit(ctx.source).alias("source"), "_line"))
    return res


def _scalar_probe(sample: list[dict]) -> bool:
    return any(isinstance(r.get("helpfulness"), (int, float)) and not isinstance(r.get("helpfulness"), bool) for r in sample)


def _list_probe(sample: list[dict]) -> bool:
    return any(isinstance(r.get("helpfulness"), list) for r in sample)


_RATING_SPEC = {"prompt": pl.String, "response": pl.String, **{a: pl.Float64 for a in ATTRS}, "split": pl.String}
_DISAGREE_SPEC = {"prompt": pl.String, "response": pl.String, **{a: pl.List(pl.Float64) for a in ATTRS}, "split": pl.String}

register(Format("helpsteer2", _RATING_SPEC, ("prompt", "response", *ATTRS), lambda df, c: _norm_ratings(df, c, False), probe=_scalar_probe, description="HelpSteer2 train/validation: aggregated 0..4 ratings"))
register(Format("helpsteer", _RATING_SPEC, ("prompt", "response", *ATTRS), lambda df, c: _norm_ratings(df, c, False), probe=lambda s: False, description="HelpSteer (1): same schema as HelpSteer2"))
register(Format("helpsteer2-disagreements", _DISAGREE_SPEC, ("prompt", "response", *ATTRS), lambda df, c: _norm_ratings(df, c, True), probe=_list_probe, description="HelpSteer2 disagreements: per-annotator rating lists"))


# --- preference pairs with per-annotator votes -------------------------------------------------
def _pair_frames(df: pl.DataFrame, ctx: Ctx, r1: str, r2: str) -> pl.DataFrame:
    df = with_response_ids(df, "context", r1, "a_")
    df = with_response_ids(df, "context", r2, "b_")
    return df.with_columns(content_pair_id(ctx.fmt, df["a_id"], df["b_id"]).alias("pair_id"))


def _add_pair_responses(res: Result, df: pl.DataFrame, ctx: Ctx, r1: str, r2: str) -> None:
    meta = _meta(df, ctx)
    res.add("responses", responses_from(df, context="context", response=r1, id_col="a_id", prompt_id_col="a_prompt_id", source=ctx.source, meta=meta))
    res.add("responses", responses_from(df, context="context", response=r2, id_col="b_id", prompt_id_col="b_prompt_id", source=ctx.source, meta=meta))


def _base_pref(df: pl.DataFrame) -> list[pl.Expr]:
    return [
        "pair_id",
        pl.col("a_prompt_id").alias("prompt_id"),
        pl.col("a_id").alias("response_a_id"),
        pl.col("b_id").alias("response_b_id"),
        "_line",
    ]


def _votes(df: pl.DataFrame, col: str, strength: str, text: str, ctx: Ctx) -> pl.DataFrame:
    """Explode a list-of-struct vote column into per-annotator preference rows."""
    v = df.select(*_base_pref(df), pl.col(col)).with_columns(pl.int_ranges(pl.col(col).list.len()).alias("k")).explode([col, "k"])
    v = v.filter(pl.col(col).is_not_null())
    return v.select(
        pl.exclude(col, "k"),
        pl.format("anon:{}:{}", "pair_id", "k").alias("annotator_id"),
        pl.col(col).struct.field(strength).cast(pl.Float64).alias("strength"),
        pl.col(col).struct.field(text).alias("justification"),
        pl.lit(ctx.source).alias("source"),
    )


def _vote_checks(col: str, strength: str) -> list:
    c = pl.col(col)
    bad = c.list.eval(
        pl.element().struct.field(strength).is_null()
        | (pl.element().struct.field(strength).abs() > 3)
        | (pl.element().struct.field(strength) != pl.element().struct.field(strength).round())
    ).list.any()
    return [(bad.fill_null(False), pl.lit(f"field '{col}': every vote needs an integer {strength} in -3..3"))]


def _norm_hs2_preference(df: pl.DataFrame, ctx: Ctx) -> Result:
    res = Result()
    checks = [missing("prompt"), missing("response_1"), missing("response_2"), missing("preference_strength"),
              int_in_range("preference_strength", -3, 3, "strength"),
              (pl.col("response_1") == pl.col("response_2"), pl.lit("response_1 is identical to response_2"))]
    checks += _vote_checks("all_preferences_unprocessed", "strength")
    df, bad = split_reasons(df, checks)
    res.reject(bad["_line"], bad["reason"])
    if df.height == 0:
        return res
    df = _pair_frames(prompt_context(df), ctx, "response_1", "response_2")
    _add_pair_responses(res, df, ctx, "response_1", "response_2")
    justification = pl.concat_str([pl.col("preference_statement"), pl.col("preference_elaboration")], separator="\n", ignore_nulls=True)
    res.add("preferences", df.select(*_base_pref(df), pl.lit(None, dtype=pl.String).alias("annotator_id"), pl.col("preference_strength").alias("strength"), justification.alias("justification"), pl.lit(ctx.source).alias("source")))
    res.add("preferences", _votes(df, "all_preferences_unprocessed", "strength", "justification", ctx))
    return res


_VOTE = pl.List(pl.Struct({"strength": pl.Float64, "justification": pl.String}))
register(Format(
    "helpsteer2-preference",
    {"prompt": pl.String, "response_1": pl.String, "response_2": pl.String, "preference_strength": pl.Float64,
     "preference_statement": pl.String, "preference_elaboration": pl.String, "all_preferences_unprocessed": _VOTE, "split": pl.String},
    ("prompt", "response_1", "response_2", "preference_strength"),
    _norm_hs2_preference,
    description="HelpSteer2 preference: aggregate strength + all_preferences_unprocessed votes",
))


# --- HelpSteer3 ---------------------------------------------------------------------------------
_HS3_BASE = {"domain": pl.String, "language": pl.String, "context": CONTEXT}
_INDIV = pl.List(pl.Struct({"score": pl.Float64, "reasoning": pl.String}))


def _norm_hs3_pairs(df: pl.DataFrame, ctx: Ctx) -> Result:
    res = Result()
    has_pref = "overall_preference" in df.columns
    has_feedback = "feedback1" in df.columns
    checks = context_ok() + [missing("response1"), missing("response2"),
                             (pl.col("response1") == pl.col("response2"), pl.lit("response1 is identical to response2"))]
    if has_pref:
        checks.append(int_in_range("overall_preference", -3, 3, "strength"))
        checks += _vote_checks("individual_preference", "score")
    if not has_feedback:
        checks.append(missing("overall_preference"))
    df, bad = split_reasons(df, checks)
    res.reject(bad["_line"], bad["reason"])
    if df.height == 0:
        return res
    df = _pair_frames(df, ctx, "response1", "response2")
    _add_pair_responses(res, df, ctx, "response1", "response2")
    if has_pref:
        agg = df.filter(pl.col("overall_preference").is_not_null())
        res.add("preferences", agg.select(*_base_pref(agg), pl.lit(None, dtype=pl.String).alias("annotator_id"), pl.col("overall_preference").alias("strength"), pl.lit(None, dtype=pl.String).alias("justification"), pl.lit(ctx.source).alias("source")))
        res.add("preferences", _votes(df, "individual_preference", "score", "reasoning", ctx))
    if has_feedback:
        for col, rid in (("feedback1", "a_id"), ("feedback2", "b_id")):
            fb = df.select(pl.col(rid).alias("response_id"), "pair_id", "_line", pl.col(col)).with_columns(pl.int_ranges(pl.col(col).list.len()).alias("k")).explode([col, "k"])
            fb = fb.filter(pl.col(col).is_not_null())
            res.add("feedback", fb.select("response_id", pl.format("anon:{}:{}", "pair_id", "k").alias("annotator_id"), pl.col(col).alias("feedback"), pl.lit(ctx.source).alias("source"), "_line"))
    return res


register(Format(
    "helpsteer3-preference",
    {**_HS3_BASE, "response1": pl.String, "response2": pl.String, "overall_preference": pl.Float64, "individual_preference": _INDIV, "split": pl.String},
    ("context", "response1", "response2", "overall_preference"),
    _norm_hs3_pairs,
    description="HelpSteer3 preference: context turns, overall + individual preferences",
))
register(Format(
    "helpsteer3-feedback",
    {**_HS3_BASE, "response1": pl.String, "response2": pl.String, "feedback1": pl.List(pl.String), "feedback2": pl.List(pl.String),
     "overall_preference": pl.Float64, "individual_preference": _INDIV, "split": pl.String},
    ("context", "response1", "response2", "feedback1", "feedback2"),
    _norm_hs3_pairs,
    description="HelpSteer3 feedback: free-text feedback per response",
))


def _norm_hs3_edit(df: pl.DataFrame, ctx: Ctx) -> Result:
    res = Result()
    quality = "good_edited_response" in df.columns
    edited_cols = ["good_edited_response", "bad_edited_response"] if quality else ["edited_response"]
    checks = context_ok() + [missing("original_response")] + [missing(c) for c in edited_cols]
    df, bad = split_reasons(df, checks)
    res.reject(bad["_line"], bad["reason"])
    if df.height == 0:
        return res
    df = with_response_ids(df, "context", "original_response", "o_")
    meta = _meta(df, ctx)
    res.add("responses", responses_from(df, context="context", response="original_response", id_col="o_id", prompt_id_col="o_prompt_id", source=ctx.source, meta=meta))
    fb_list = pl.col("feedback") if "feedback" in df.columns else pl.lit(None, dtype=pl.List(pl.String))
    for col in edited_cols:
        df = with_response_ids(df, "context", col, "e_")
        res.add("responses", responses_from(df, context="context", response=col, id_col="e_id", prompt_id_col="e_prompt_id", source=ctx.source, meta=meta))
        edit_id = content_pair_id(ctx.fmt, df["o_id"], df["e_id"])
        q = None if not quality else ("good" if col.startswith("good") else "bad")
        res.add("edits", df.select(
            edit_id.alias("edit_id"), pl.col("o_id").alias("original_response_id"), pl.col("e_id").alias("edited_response_id"),
            pl.lit(q, dtype=pl.String).alias("quality"), fb_list.alias("feedback"),
            (pl.col("change_summary") if "change_summary" in df.columns else pl.lit(None, dtype=pl.String)).alias("change_summary"),
            pl.lit(ctx.source).alias("source"), "_line"))
    # the annotators' feedback texts are about the original response
    ids = content_pair_id(ctx.fmt, df["o_id"], df["o_prompt_id"])
    fb = df.select(pl.col("o_id").alias("response_id"), ids.alias("item"), "_line", fb_list.alias("fb")).with_columns(
        pl.int_ranges(pl.col("fb").list.len()).alias("k")).explode(["fb", "k"]).filter(pl.col("fb").is_not_null())
    res.add("feedback", fb.select("response_id", pl.format("anon:{}:{}", "item", "k").alias("annotator_id"), pl.col("fb").alias("feedback"), pl.lit(ctx.source).alias("source"), "_line"))
    return res


register(Format(
    "helpsteer3-edit",
    {**_HS3_BASE, "original_response": pl.String, "edited_response": pl.String, "feedback": pl.List(pl.String), "change_summary": pl.String, "split": pl.String},
    ("context", "original_response", "edited_response"),
    _norm_hs3_edit,
    description="HelpSteer3 edit: original and edited response with feedback",
))
register(Format(
    "helpsteer3-edit-quality",
    {**_HS3_BASE, "original_response": pl.String, "good_edited_response": pl.String, "bad_edited_response": pl.String, "feedback": pl.List(pl.String), "split": pl.String},
    ("context", "original_response", "good_edited_response", "bad_edited_response"),
    _norm_hs3_edit,
    description="HelpSteer3 edit_quality: good and bad edits of a response",
))


def _norm_hs3_principle(df: pl.DataFrame, ctx: Ctx) -> Result:
    res = Result()
    raw = [a if a is not None else b for a, b in zip(df["fulfilment"].to_list(), df["fulfillment"].to_list())]
    df = df.with_columns(pl.Series("_ful", [yes_no(v) for v in raw], dtype=pl.Float64),
                         pl.Series("_ful_text", [repr(v)[:40] for v in raw], dtype=pl.String))
    checks = context_ok() + [missing("response"), missing("principle"),
                             (pl.col("_ful").is_null(), pl.format("field 'fulfilment': expected Yes or No, got {}", "_ful_text"))]
    df, bad = split_reasons(df, checks)
    res.reject(bad["_line"], bad["reason"])
    if df.height == 0:
        return res
    df = with_response_ids(df, "context", "response", "")
    res.add("responses", responses_from(df, context="context", response="response", id_col="id", prompt_id_col="prompt_id", source=ctx.source, meta=_meta(df, ctx)))
    res.add("principles", df.select(pl.col("id").alias("response_id"), pl.lit(None, dtype=pl.String).alias("annotator_id"), "principle", pl.col("_ful").alias("fulfilment"), pl.lit(ctx.source).alias("source"), "_line"))
    return res


register(Format(
    "helpsteer3-principle",
    {**_HS3_BASE, "response": pl.String, "principle": pl.String, "fulfilment": JSON, "fulfillment": JSON, "split": pl.String},
    ("context", "response", "principle"),
    _norm_hs3_principle,
    description="HelpSteer3 principle (RLBFF): principle + Yes/No fulfilment",
))

__all__ = ["parse_extra_id_prompt", "prompt_context", "TURN"]
