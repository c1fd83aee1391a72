"""Readers for crowd-annotated pairwise data with real annotator ids: PandaLM (annotator1..3 per
item) and LLMFAO (a pairs file plus a votes CSV, given together in one ingest call; its LLM-judge
CSVs and annotator-training pairs are read only when given explicitly, never from a folder)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..schema import JSON
from . import Ctx, Format, register
from .common import Result, RowBuilder, iter_records

# PandaLM labels: 1 = response1 better, 2 = response2 better, 0 = tie / similar quality.
_PANDALM_STRENGTH = {1: -1.0, 2: 1.0, 0: 0.0}


def _split_cmp_key(key: str | None) -> tuple[str | None, str | None]:
    if key and key.count("_") == 1:
        a, b = key.split("_")
        return a, b
    return None, None


def _norm_pandalm(df: pl.DataFrame, ctx: Ctx) -> Result:
    b = RowBuilder(ctx)
    for line, r in iter_records(df):
        if b.reject_missing(line, r, ("idx", "instruction", "response1", "response2")):
            continue
        votes = [r[f"annotator{k}"] for k in (1, 2, 3)]
        wrong = next((k for k, v in enumerate(votes, 1) if v is not None and v not in _PANDALM_STRENGTH), None)
        if wrong:
            b.reject(line, f"field 'annotator{wrong}': label {votes[wrong - 1]!r} is not one of 0 (tie), 1, 2")
            continue
        if all(v is None for v in votes):
            b.reject(line, "fields 'annotator1..3': no label")
            continue
        if r["response1"] == r["response2"]:
            b.reject(line, "response1 is identical to response2")
            continue
        prompt = r["instruction"] if not (r["input"] or "").strip() else f"{r['instruction']}\n\n{r['input']}"
        turns = [{"role": "user", "content": prompt}]
        model_a, model_b = _split_cmp_key(r["cmp_key"])
        a_id, pid = b.response(turns, r["response1"], line, model=model_a, domain=r["motivation_app"])
        b_id, _ = b.response(turns, r["response2"], line, model=model_b, domain=r["motivation_app"])
        pair_id = f"{ctx.fmt}:{r['idx']}"
        for k, v in enumerate(votes, 1):
            if v is not None:
                b.add("preferences", line, pair_id=pair_id, prompt_id=pid, response_a_id=a_id, response_b_id=b_id,
                      annotator_id=f"annotator{k}", strength=_PANDALM_STRENGTH[int(v)], justification=None, subset=r["motivation_app"], flags=[])
    return b.result()


register(Format(
    "pandalm",
    {"idx": JSON, "motivation_app": pl.String, "cmp_key": pl.String, "instruction": pl.String, "input": pl.String,
     "response1": pl.String, "response2": pl.String, "annotator1": pl.Float64, "annotator2": pl.Float64, "annotator3": pl.Float64},
    ("instruction", "response1", "response2", "annotator1"),
    _norm_pandalm,
    description="PandaLM test set: annotator1..3 labels (1, 2, 0 = tie)",
))


# --- LLMFAO --------------------------------------------------------------------------------------
def _norm_llmfao_models(df: pl.DataFrame, ctx: Ctx) -> Result:
    models = ctx.shared.setdefault("llmfao_models", {})
    b = RowBuilder(ctx)
    for line, r in iter_records(df):
        if r["id"] is None or r["name"] is None:
            b.reject(line, "field 'id' and 'name' are required")
            continue
        models[str(r["id"])] = r["name"]
    return b.result()


def _norm_llmfao_pairs(df: pl.DataFrame, ctx: Ctx) -> Result:
    pairs = ctx.shared.setdefault("llmfao_pairs", {})
    models = ctx.shared.get("llmfao_models", {})
    b = RowBuilder(ctx)
    for line, r in iter_records(df):
        if b.reject_missing(line, r, ("id", "text", "result_x", "result_y")):
            continue
        if r["result_x"] == r["result_y"]:
            b.reject(line, "result_x is identical to result_y")
            continue
        key = str(r["id"])
        if ctx.drop_empty and (not r["result_x"].strip() or not r["result_y"].strip()):
            ctx.shared.setdefault("llmfao_dropped", {})[key] = line
            b.reject(line, "empty response (--drop-empty)")
            continue
        if key in pairs:
            b.reject(line, f"field 'id': pair {key} already defined on line {pairs[key][4]}")
            continue
        turns = [{"role": "user", "content": r["text"]}]
        a_id, pid = b.response(turns, r["result_x"], line, model=models.get(str(r["model_x"]), _str(r["model_x"])), domain=r["type"])
        b_id, _ = b.response(turns, r["result_y"], line, model=models.get(str(r["model_y"]), _str(r["model_y"])), domain=r["type"])
        pairs[key] = (f"llmfao:{key}", pid, a_id, b_id, line)
    return b.result()


def _str(v) -> str | None:
    return None if v is None else str(v)


_WINNER = {"left": -1.0, "right": 1.0, "tie": 0.0}


def _norm_llmfao_votes(df: pl.DataFrame, ctx: Ctx) -> Result:
    pairs = ctx.shared.get("llmfao_pairs", {})
    b = RowBuilder(ctx)
    judge = f"judge:{Path(ctx.source).name.split('.')[0]}"
    for line, r in iter_records(df):
        if r["id"] is None:
            b.reject(line, "field 'id': missing or null")
            continue
        key = str(r["id"])
        dropped = ctx.shared.get("llmfao_dropped", {})
        if key in dropped:
            b.reject(line, f"field 'id': vote for pair {key}, whose pair record (line {dropped[key]}) was quarantined")
            continue
        if key not in pairs:
            b.reject(line, f"field 'id': vote for pair {key}, which is not in the pairs file (give pairs-crowd.jsonl in the same call)")
            continue
        winner = (r["winner"] or "").strip().lower()
        if winner not in _WINNER:
            b.reject(line, f"field 'winner': expected left, right or tie, got {r['winner']!r}")
            continue
        pair_id, pid, a_id, b_id, _ = pairs[key]
        crowd = r.get("worker") is not None
        b.add("preferences", line, pair_id=pair_id, prompt_id=pid, response_a_id=a_id, response_b_id=b_id,
              annotator_id=f"llmfao:{r['worker']}" if crowd else judge, strength=_WINNER[winner], justification=None, subset=None,
              flags=[] if crowd else ["llm_judge"])
    return b.result()


def _norm_llmfao_training(df: pl.DataFrame, ctx: Ctx) -> Result:
    """Annotator-training pairs: a golden answer (left / right / tie) and its reason, as gold labels."""
    b = RowBuilder(ctx)
    for line, r in iter_records(df):
        bad = next((f for f in ("id", "text", "result_x", "result_y", "golden") if r[f] is None), None)
        golden = (r["golden"] or "").strip().lower()
        if bad or golden not in _WINNER or r["result_x"] == r["result_y"]:
            b.reject(line, f"field '{bad}': missing or null" if bad else f"field 'golden': expected left, right or tie, got {r['golden']!r}"
                     if golden not in _WINNER else "result_x is identical to result_y")
            continue
        turns = [{"role": "user", "content": r["text"]}]
        a_id, pid = b.response(turns, r["result_x"], line, model=_str(r["model_x"]))
        b_id, _ = b.response(turns, r["result_y"], line, model=_str(r["model_y"]))
        b.add("preferences", line, pair_id=f"llmfao:{r['id']}", prompt_id=pid, response_a_id=a_id, response_b_id=b_id, annotator_id=None,
              strength=_WINNER[golden], justification=r["reason"], subset="training", flags=[])
    return b.result()


def _no_worker(sample: list[dict]) -> bool:
    return not any("worker" in r for r in sample)


register(Format("llmfao-models", {"id": JSON, "name": pl.String}, ("id", "name", "api_id"), _norm_llmfao_models,
                group="llmfao", order=0, description="LLMFAO models.jsonl (model id -> name)"))
register(Format("llmfao-pairs",
                {"id": JSON, "prompt": JSON, "text": pl.String, "type": pl.String, "model_x": JSON, "result_x": pl.String, "model_y": JSON, "result_y": pl.String},
                ("id", "text", "model_x", "result_x", "model_y", "result_y"), _norm_llmfao_pairs,
                group="llmfao", order=1, description="LLMFAO pairs-crowd.jsonl"))
_VOTES_SPEC = {"id": pl.Int64, "prompt": JSON, "model_x": JSON, "model_y": JSON, "worker": pl.String, "winner": pl.String, "left": pl.String, "right": pl.String}
_JUDGE_WHY = ("LLM-judge verdicts (one GPT-4/3.5 verdict per pair, no worker column), not crowd votes: analysis would count the judge as an annotator. "
              "Ingest them into a dataset of their own: helpsteer ingest pairs-crowd.jsonl FILE --name NAME")
register(Format("llmfao-votes", _VOTES_SPEC, ("id", "model_x", "model_y", "worker", "winner"), _norm_llmfao_votes,
                group="llmfao", order=2, description="LLMFAO crowd-comparisons.csv: crowd votes with worker ids"))
register(Format("llmfao-judge", _VOTES_SPEC, ("id", "model_x", "model_y", "winner"), _norm_llmfao_votes, probe=_no_worker,
                group="llmfao", order=2, description="LLMFAO gpt4-/gpt3-crowd-comparisons.csv: one LLM-judge verdict per pair (annotator judge:<file>, flag llm_judge)",
                folder_skip=_JUDGE_WHY, conflicts={"llmfao-votes": _JUDGE_WHY}))
register(Format("llmfao-training",
                {"id": JSON, "text": pl.String, "model_x": JSON, "result_x": pl.String, "model_y": JSON, "result_y": pl.String, "golden": pl.String, "reason": pl.String},
                ("id", "text", "model_x", "result_x", "model_y", "result_y", "golden"), _norm_llmfao_training,
                group="llmfao", order=1, description="LLMFAO pairs-crowd-training.jsonl: annotator-training pairs with golden answers (gold labels)",
                folder_skip="LLMFAO annotator-training pairs (golden answers shown to train the crowd workers), not part of the crowd data; "
                            "give the file explicitly to read them as gold pairs"))
