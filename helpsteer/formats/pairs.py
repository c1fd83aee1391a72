"""Readers for chosen/rejected pair formats: HH-RLHF transcripts, TRL-style pairs (standard and
conversational), RewardBench v1 and 2, RM-Bench (3x3 style matrix), JudgeBench and LLMBar.

A single gold label per pair is stored with `annotator_id` null (it is the label, not a vote);
A is the chosen response, so strength is -1 (HelpSteer convention: negative = A better)."""

from __future__ import annotations

import re

import polars as pl

from ..schema import JSON
from . import Ctx, Format, register
from .common import (
    Result,
    RowBuilder,
    content_pair_id,
    int_in_range,
    iter_records,
    missing,
    responses_from,
    split_reasons,
    user_context,
    with_response_ids,
)

_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ ]?")


def parse_transcript(text: str) -> list[dict]:
    """HH-RLHF transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...") -> turns."""
    parts = _HH_TURN.split(text)
    turns = []
    if parts[0].strip():
        turns.append({"role": "user", "content": parts[0].strip()})
    for role, content in zip(parts[1::2], parts[2::2]):
        turns.append({"role": "user" if role == "Human" else "assistant", "content": content})
    return turns


def _split_last_assistant(turns: list[dict], field: str) -> tuple[list[dict], str]:
    if not turns or turns[-1]["role"] != "assistant":
        raise ValueError(f"field '{field}': transcript does not end with an Assistant turn")
    return turns[:-1], turns[-1]["content"]


def _gold_pair(b: RowBuilder, line: int, pair_id: str, ctx_a, text_a, ctx_b, text_b, *, subset=None, meta_a=None, meta_b=None, strength=-1.0, style=(None, None)) -> None:
    a_id, a_pid = b.response(ctx_a, text_a, line, **(meta_a or {}))
    b_id, b_pid = b.response(ctx_b, text_b, line, **(meta_b or {}))
    flags = [] if a_pid == b_pid else ["context_mismatch"]
    b.add("preferences", line, pair_id=pair_id, prompt_id=a_pid, response_a_id=a_id, response_b_id=b_id,
          annotator_id=None, strength=strength, justification=None, subset=subset, style_a=style[0], style_b=style[1], flags=flags)


def _norm_hh(df: pl.DataFrame, ctx: Ctx) -> Result:
    from ..ids import stable_hash

    b = RowBuilder(ctx)
    for line, r in iter_records(df):
        if r["chosen"] is None or r["rejected"] is None:
            b.reject(line, f"field '{'chosen' if r['chosen'] is None else 'rejected'}': missing or null")
            continue
        if r["chosen"] == r["rejected"]:
            b.reject(line, "chosen is identical to rejected")
            continue
        try:
            ctx_c, resp_c = _split_last_assistant(parse_transcript(r["chosen"]), "chosen")
            ctx_r, resp_r = _split_last_assistant(parse_transcript(r["rejected"]), "rejected")
        except ValueError as e:
            b.reject(line, str(e))
            continue
        if not any(t["role"] == "user" for t in ctx_c):
            b.reject(line, "field 'chosen': transcript has no Human turn before the last Assistant turn")
            continue
        pair_id = stable_hash(ctx.fmt, r["chosen"], r["rejected"])
        _gold_pair(b, line, pair_id, ctx_c, resp_c, ctx_r, resp_r)
    return b.result()


def _hh_probe(sample: list[dict]) -> bool:
    return "prompt" not in sample[0] and all(isinstance(r.get("chosen"), str) and "Assistant:" in r["chosen"] and "Human:" in r["chosen"] for r in sample[:20])


register(Format("hh-rlhf", {"chosen": pl.String, "rejected": pl.String}, ("chosen", "rejected"), _norm_hh, probe=_hh_probe,
                description="Anthropic HH-RLHF: chosen/rejected transcripts"))


# --- TRL-style pairs -----------------------------------------------------------------------------
def _messages(value, field: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise ValueError(f"field '{field}': expected a string or a list of {{role, content}} messages")


def _completion(prompt_turns: list[dict] | None, value, field: str) -> tuple[list[dict], str]:
    """(context, response text) of a chosen/rejected value, standard or conversational."""
    if isinstance(value, str):
        if prompt_turns is None:
            raise ValueError(f"field '{field}': a plain-text completion needs a 'prompt'")
        return prompt_turns, value
    turns = _messages(value, field)
    if not turns or turns[-1]["role"] != "assistant":
        raise ValueError(f"field '{field}': conversation must end with an assistant message")
    return (prompt_turns or []) + turns[:-1], turns[-1]["content"]


def _norm_pairs(df: pl.DataFrame, ctx: Ctx) -> Result:
    from ..ids import stable_hash

    b = RowBuilder(ctx)
    for line, r in iter_records(df):
        try:
            for f in ("chosen", "rejected"):
                if r[f] is None:
                    raise ValueError(f"field '{f}': missing or null")
            prompt = _messages(r["prompt"], "prompt") if r["prompt"] is not None else None
            ctx_c, resp_c = _completion(prompt, r["chosen"], "chosen")
            ctx_r, resp_r = _completion(prompt, r["rejected"], "rejected")
            if not any(t["role"] == "user" for t in ctx_c):
                raise ValueError("field 'prompt': no user turn before the completion")
            if ctx_c == ctx_r and resp_c == resp_r:
                raise ValueError("chosen is identical to rejected")
            margin = r.get("margin")
            if margin is not None and (margin < 0 or margin != margin):
                raise ValueError(f"field 'margin': expected a number >= 0, got {margin!r}")
        except ValueError as e:
            b.reject(line, str(e))
            continue
        strength = -1.0 if margin is None else -min(float(margin), 3.0)
        item = r.get("id")
        pair_id = f"{ctx.fmt}:{item}" if item is not None else stable_hash(ctx.fmt, repr(ctx_c), resp_c, repr(ctx_r), resp_r)
        _gold_pair(b, line, pair_id, ctx_c, resp_c, ctx_r, resp_r, strength=strength, meta_a={"split": r.get("split")}, meta_b={"split": r.get("split")})
    return b.result()


register(Format("pairs", {"prompt": JSON, "chosen": JSON, "rejected": JSON, "margin": pl.Float64, "id": JSON, "split": pl.String},
                ("chosen", "rejected"), _norm_pairs, description="TRL-style prompt/chosen/rejected (text or conversational)"))


# --- RewardBench v1 ------------------------------------------------------------------------------
def _norm_rewardbench(df: pl.DataFrame, ctx: Ctx) -> Result:
    from ..ids import stable_hash

    b = RowBuilder(ctx)
    for line, r in iter_records(df):
        if b.reject_missing(line, r, ("prompt", "chosen", "rejected")):
            continue
        if r["chosen"] == r["rejected"]:
            b.reject(line, "chosen is identical to rejected")
            continue
        turns = [{"role": "user", "content": r["prompt"]}]
        pair_id = f"{ctx.fmt}:{r['id']}" if r["id"] is not None else stable_hash(ctx.fmt, r["prompt"], r["chosen"], r["rejected"])
        _gold_pair(b, line, pair_id, turns, r["chosen"], turns, r["rejected"], subset=r["subset"],
                   meta_a={"model": r["chosen_model"]}, meta_b={"model": r["rejected_model"]})
    return b.result()


register(Format("rewardbench", {"prompt": pl.String, "chosen": pl.String, "chosen_model": pl.String, "rejected": pl.String,
                                "rejected_model": pl.String, "subset": pl.String, "id": JSON},
                ("prompt", "chosen", "rejected", "subset"), _norm_rewardbench, description="RewardBench v1 (subset, id)"))


# --- RewardBench 2: best-of-N items ---------------------------------------------------------------
# One item = one prompt with 1+ chosen and 3+ rejected responses (1+ in Ties) (allenai/reward-bench-2). Stored as
# the prompt's responses plus one gold pair per (chosen i, rejected j), pair_id `rewardbench2:<id>:i:j`,
# so pairwise evaluation works unchanged and rm_training.evaluate.rewardbench2_items regroups the
# item (chosen in order, then rejected) for the official best-of-N and Ties scoring.
_TIES_ID = re.compile(r"(ref|tied):[0-9]+")


def _rb2_reason(r: dict, seen: dict, line: int) -> str | None:
    """Why an item cannot be scored as the official code scores it, or None."""
    for f in ("prompt", "subset", "num_correct"):
        if r[f] is None:
            return f"field '{f}': missing or null"
    # best-of-4 subsets have 3 rejected each; Ties items are scored by gaps between their correct
    # and incorrect answers, which the official code computes for any number of incorrect ones
    ties = isinstance(r["subset"], str) and r["subset"].lower() == "ties"
    for f, least in (("chosen", 1), ("rejected", 1 if ties else 3)):
        v = r[f]
        if v is None or len(v) < least:
            return f"field '{f}': expected at least {least} response{'s' if least > 1 else ''}, got {0 if v is None else len(v)}"
        for k, x in enumerate(v):
            if x is None:
                return f"field '{f}[{k}]': missing or null"
    if r["num_correct"] != len(r["chosen"]):
        # the official scorer takes the first num_correct of chosen + rejected as the correct ones
        return f"field 'num_correct': {r['num_correct']} does not match the {len(r['chosen'])} chosen responses"
    item = r["id"]
    if item is not None and (isinstance(item, bool) or not isinstance(item, (str, int))):
        return f"field 'id': expected a string or an integer, got {type(item).__name__}"
    if ties:
        if not isinstance(item, str) or not _TIES_ID.fullmatch(item):
            return f"field 'id': a Ties item's id is ref:N or tied:N (a prompt with one correct answer and its tied twin), got {item!r}"
        if item.startswith("tied:") and len(r["chosen"]) < 2:
            return f"field 'chosen': a Ties tied:N item needs at least 2 chosen (correct) responses, got {len(r['chosen'])}"
    if item is not None:
        first = seen.setdefault(str(item), line)
        if first != line:
            return f"duplicate id {item!r} (first on line {first})"
    return None


def _norm_rewardbench2(df: pl.DataFrame, ctx: Ctx) -> Result:
    from ..ids import stable_hash

    b = RowBuilder(ctx)
    seen = ctx.shared.setdefault(("rewardbench2_ids", ctx.source), {})  # item ids across the file's chunks
    for line, r in iter_records(df):
        reason = _rb2_reason(r, seen, line)
        if reason:
            b.reject(line, reason)
            continue
        turns = [{"role": "user", "content": r["prompt"]}]
        texts = list(r["chosen"]) + list(r["rejected"])
        models = r["models"] if isinstance(r["models"], list) and len(r["models"]) == len(texts) else [None] * len(texts)
        made = [b.response(turns, t, line, model=m if isinstance(m, str) else None) for t, m in zip(texts, models)]
        ids, pid = [rid for rid, _ in made], made[0][1]
        item = r["id"] if r["id"] is not None else stable_hash(ctx.fmt, r["prompt"], *texts)
        n = len(r["chosen"])
        for i in range(n):
            for j in range(len(texts) - n):
                a_id, b_id = ids[i], ids[n + j]
                b.add("preferences", line, pair_id=f"{ctx.fmt}:{item}:{i}:{j}", prompt_id=pid, response_a_id=a_id, response_b_id=b_id,
                      annotator_id=None, strength=-1.0, justification=None, subset=r["subset"],
                      flags=["chosen_equals_rejected"] if a_id == b_id else [])
    return b.result()


def _rewardbench2_probe(sample: list[dict]) -> bool:
    """RewardBench 2 tells itself from v1 by its list-valued chosen (v1: one string)."""
    return all(isinstance(r.get("chosen"), list) for r in sample[:20])


register(Format("rewardbench2", {"id": JSON, "prompt": pl.String, "chosen": pl.List(pl.String), "rejected": pl.List(pl.String),
                                 "num_correct": pl.Int64, "subset": pl.String, "models": JSON},
                ("prompt", "chosen", "rejected", "subset"), _norm_rewardbench2, probe=_rewardbench2_probe,
                description="RewardBench 2 (best-of-N: chosen[1+], rejected[3+], num_correct, subset; Ties ids ref:N / tied:N)"))


# --- RM-Bench: 3 styles x 3 styles -------------------------------------------------------------------
def _norm_rmbench(df: pl.DataFrame, ctx: Ctx) -> Result:
    from ..ids import stable_hash

    b = RowBuilder(ctx)
    for line, r in iter_records(df):
        try:
            if r["prompt"] is None:
                raise ValueError("field 'prompt': missing or null")
            for f in ("chosen", "rejected"):
                v = r[f]
                if v is None or len(v) == 0 or any(x is None for x in v):
                    raise ValueError(f"field '{f}': expected a list of response strings (one per style)")
        except ValueError as e:
            b.reject(line, str(e))
            continue
        turns = [{"role": "user", "content": r["prompt"]}]
        item = r["id"] if r["id"] is not None else stable_hash(ctx.fmt, r["prompt"], *r["chosen"], *r["rejected"])
        for i, chosen in enumerate(r["chosen"]):
            for j, rejected in enumerate(r["rejected"]):
                _gold_pair(b, line, f"{ctx.fmt}:{item}:{i}{j}", turns, chosen, turns, rejected, subset=r["domain"],
                           meta_a={"style": i}, meta_b={"style": j}, style=(i, j))
    return b.result()


def _rmbench_probe(sample: list[dict]) -> bool:
    return all(isinstance(r.get("chosen"), list) and all(isinstance(x, str) for x in r["chosen"]) for r in sample[:20])


register(Format("rm-bench", {"id": JSON, "prompt": pl.String, "chosen": pl.List(pl.String), "rejected": pl.List(pl.String), "domain": pl.String},
                ("prompt", "chosen", "rejected", "domain"), _norm_rmbench, probe=_rmbench_probe,
                description="RM-Bench: chosen[3]/rejected[3] by style, 3x3 matrix"))


# --- JudgeBench ------------------------------------------------------------------------------------
_LABELS = {"A>B": -1.0, "B>A": 1.0, "A=B": 0.0, "A>>B": -2.0, "B>>A": 2.0}


def _norm_judgebench(df: pl.DataFrame, ctx: Ctx) -> Result:
    from ..ids import stable_hash

    b = RowBuilder(ctx)
    for line, r in iter_records(df):
        if b.reject_missing(line, r, ("question", "response_A", "response_B", "label")):
            continue
        if r["label"] not in _LABELS:
            b.reject(line, f"field 'label': expected one of A>B, B>A, A=B, got {r['label']!r}")
            continue
        if r["response_A"] == r["response_B"]:
            b.reject(line, "response_A is identical to response_B")
            continue
        turns = [{"role": "user", "content": r["question"]}]
        item = r["pair_id"] if r["pair_id"] is not None else stable_hash(ctx.fmt, r["question"], r["response_A"], r["response_B"])
        model = r["response_model"]
        _gold_pair(b, line, f"{ctx.fmt}:{item}", turns, r["response_A"], turns, r["response_B"], subset=r["source"],
                   strength=_LABELS[r["label"]], meta_a={"model": model}, meta_b={"model": model})
    return b.result()


register(Format("judgebench", {"pair_id": JSON, "question": pl.String, "response_A": pl.String, "response_B": pl.String,
                               "label": pl.String, "source": pl.String, "response_model": pl.String},
                ("question", "response_A", "response_B", "label"), _norm_judgebench, description="JudgeBench (label A>B / B>A)"))


# --- LLMBar (and its processed MT-Bench set) --------------------------------------------------------
def _llmbar_subset(ctx: Ctx) -> str | None:
    """Natural, Neighbor, GPTInst, GPTOut, Manual, MT-Bench: the folder of `dataset.json`."""
    if ctx.path is None:
        return None
    return ctx.path.parent.name if ctx.path.name.split(".")[0] == "dataset" else ctx.path.name.split(".")[0]


def _norm_llmbar(df: pl.DataFrame, ctx: Ctx) -> Result:
    res = Result()
    checks = [missing("input"), missing("output_1"), missing("output_2"), missing("label"), int_in_range("label", 1, 2, "label"),
              (pl.col("output_1") == pl.col("output_2"), pl.lit("output_1 is identical to output_2"))]
    df, bad = split_reasons(df, checks)
    res.reject(bad["_line"], bad["reason"])
    if df.height == 0:
        return res
    subset = _llmbar_subset(ctx)
    df = df.with_columns(user_context("input").alias("context"))
    df = with_response_ids(with_response_ids(df, "context", "output_1", "a_"), "context", "output_2", "b_")
    meta = {"split": pl.lit(ctx.split, dtype=pl.String), "domain": pl.lit(subset, dtype=pl.String)}
    res.add("responses", responses_from(df, context="context", response="output_1", id_col="a_id", prompt_id_col="a_prompt_id", source=ctx.source, meta=meta))
    res.add("responses", responses_from(df, context="context", response="output_2", id_col="b_id", prompt_id_col="b_prompt_id", source=ctx.source, meta=meta))
    pair_id = content_pair_id(ctx.fmt, df["a_id"], df["b_id"], pl.Series([subset or ""] * df.height, dtype=pl.String))
    res.add("preferences", df.select(
        pl.lit(pair_id).alias("pair_id"), pl.col("a_prompt_id").alias("prompt_id"), pl.col("a_id").alias("response_a_id"), pl.col("b_id").alias("response_b_id"),
        pl.lit(None, dtype=pl.String).alias("annotator_id"),  # a gold label, not a vote
        pl.when(pl.col("label") == 1).then(-1.0).otherwise(1.0).alias("strength"), pl.lit(None, dtype=pl.String).alias("justification"),
        pl.lit(subset, dtype=pl.String).alias("subset"), pl.lit([], dtype=pl.List(pl.String)).alias("flags"), pl.lit(ctx.source).alias("source"), "_line"))
    return res


def _llmbar_probe(sample: list[dict]) -> bool:
    return all(r.get("label") in (1, 2) and not isinstance(r.get("label"), bool) for r in sample[:50] if "label" in r)


register(Format("llmbar", {"input": pl.String, "output_1": pl.String, "output_2": pl.String, "label": pl.Float64},
                ("input", "output_1", "output_2", "label"), _norm_llmbar, probe=_llmbar_probe,
                description="LLMBar / its processed MT-Bench set: input, output_1, output_2, gold label 1 or 2; subset from the folder"))
