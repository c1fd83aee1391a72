"""Readers for Salesforce's creative-writing evaluations (github.com/salesforce/creativity_eval):

  wqrm  WritingRewards/WQRM_annotations.json: 3 drafts per item ranked by 2-4 annotators -> every
        pair of drafts gets one -1/+1 vote per ranking (anonymous annotators: anon:<item id>:<k>)
  ttcw  Art_or_Artifice: stories + 14 yes/no Torrance tests by 3 experts -> principles (the test's
        question, each expert's verdict and explanation) plus 0/1 ratings per test; give the stories
        and annotations files in one call (the tests file and the majority file optional)."""

from __future__ import annotations

import orjson
import polars as pl

from ..containers import BOM
from ..labels import YES_NO
from ..schema import JSON
from . import Ctx, Format, register
from .common import Result, responses_from, split_reasons, user_context, with_response_ids
from .mapped import add_criteria, ranking_pairs, slug_expr

# --- WQRM -------------------------------------------------------------------------------------
DRAFTS = ("first_draft", "random_cot", "best_cot")  # draft i of a pair id <item>:<i>-<j>
_WQRM_RANKS = {"Most Preferred Writing Option": 1.0, "Second Favorite Writing Option": 2.0, "Least Preferred Writing Option": 3.0}


def _wqrm_prompt(genre: str | None, ins: dict) -> str:
    """The writing instruction, from the item's plot and its voice / length where given."""
    words = f" of about {ins['word_count']} words" if ins.get("word_count") else ""
    voice = f" in the {ins['voice']}" if ins.get("voice") else ""
    return f"Write a {genre or 'short'} paragraph{words}{voice}: {ins.get('plot')}"


def _wqrm_item(r: dict) -> tuple[str, list[str], list[list[float]]]:
    """(prompt, drafts, one rank list per annotation); ValueError naming the field."""
    if not isinstance(r["instruction"], dict) or not isinstance(r["instruction"].get("plot"), str):
        raise ValueError("field 'instruction.plot': expected a string")
    drafts = []
    for d in DRAFTS:
        if not isinstance(r[d], dict) or not isinstance(r[d].get("candidate"), str):
            raise ValueError(f"field '{d}.candidate': expected a string")
        drafts.append(r[d]["candidate"])
    if len(set(drafts)) < len(drafts):
        raise ValueError("two drafts are identical")
    if not isinstance(r["annotations"], list) or not r["annotations"]:
        raise ValueError("field 'annotations': expected a non-empty list of rankings")
    ranks = []
    for k, a in enumerate(r["annotations"]):
        for d in DRAFTS:
            v = a.get(d) if isinstance(a, dict) else None
            if v not in _WQRM_RANKS:
                raise ValueError(f"field 'annotations[{k}].{d}': {v!r} is not one of {', '.join(_WQRM_RANKS)}")
        ranks.append([_WQRM_RANKS[a[d]] for d in DRAFTS])
    return _wqrm_prompt(r["genre"], r["instruction"]), drafts, ranks


def _norm_wqrm(df: pl.DataFrame, ctx: Ctx) -> Result:
    res = Result()
    good, bad_lines, reasons = [], [], []
    for r in df.select("_line", "id", "genre", "llm", "instruction", *DRAFTS, "annotations").iter_rows(named=True):
        try:
            if r["id"] is None:
                raise ValueError("field 'id': missing or null")
            good.append((r["_line"], f"wqrm:{r['id']}", r["id"], r["genre"], r["llm"], *_wqrm_item(r)))
        except ValueError as e:
            bad_lines.append(r["_line"])
            reasons.append(str(e))
    res.reject(pl.Series(bad_lines, dtype=pl.Int64), pl.Series(reasons, dtype=pl.String))
    if not good:
        return res
    t = pl.DataFrame(good, schema={"_line": pl.Int64, "_item": pl.String, "_id": pl.String, "domain": pl.String, "_llm": pl.String, "prompt": pl.String,
                                   "drafts": pl.List(pl.String), "_rk": pl.List(pl.List(pl.Float64))}, orient="row")
    t = t.with_columns(user_context("prompt").alias("context"), pl.lit(ctx.split, dtype=pl.String).alias("split"),
                       pl.concat_list([pl.format("{}/" + d, "_llm") for d in DRAFTS]).alias("model"))
    # one ranking per annotation, anonymous: anon:<item id>:<k>
    rankings = t.select("_line", "_id", "_rk", pl.int_ranges(pl.col("_rk").list.len()).alias("k")).explode("_rk", "k").select(
        "_line", "_rk", pl.format("anon:{}:{}", "_id", "k").alias("_ann"))
    return ranking_pairs(res, t, rankings, ctx)


register(Format("wqrm", {"id": pl.String, "genre": pl.String, "llm": pl.String, "instruction": JSON, **{d: JSON for d in DRAFTS}, "annotations": JSON},
                ("first_draft", "random_cot", "best_cot", "annotations"), _norm_wqrm,
                description="WQRM writing rankings: 3 drafts ranked by 2-4 annotators -> pairwise votes"))


# --- TTCW -------------------------------------------------------------------------------------


def _add_tests(tests: dict, records) -> None:
    """ttcw_all_tests.json elements -> tests["<ttcw_idx>"] = {question, category}."""
    for r in records:
        try:
            tests[str(int(r["ttcw_idx"]))] = {"question": r.get("question"), "category": r.get("category")}
        except (TypeError, ValueError, KeyError):
            continue


def _norm_ttcw_tests(df: pl.DataFrame, ctx: Ctx) -> Result:
    res = Result()
    ok = pl.Series([str(v).strip().isdigit() for v in df["ttcw_idx"].to_list()], dtype=pl.Boolean)
    df, bad = df.filter(ok), df.filter(~ok)
    res.reject(bad["_line"], pl.Series(["field 'ttcw_idx': expected a test number 1..14"] * bad.height, dtype=pl.String))
    _add_tests(ctx.shared.setdefault("ttcw_tests", {}), df.select("ttcw_idx", "question", "category").iter_rows(named=True))
    return res


def _tests(ctx: Ctx) -> dict:
    """The tests given in this call, else Art_or_Artifice/tests/ttcw_all_tests.json beside the annotations."""
    if ctx.shared.get("ttcw_tests"):
        return ctx.shared["ttcw_tests"]
    tests = ctx.shared.setdefault("ttcw_tests", {})
    beside = ctx.path.resolve().parent.parent / "tests" / "ttcw_all_tests.json" if ctx.path else None
    if beside is not None and beside.exists():
        try:  # a byte order mark must not hide the questions
            _add_tests(tests, [r for r in orjson.loads(beside.read_bytes().removeprefix(BOM)) if isinstance(r, dict)])
        except (orjson.JSONDecodeError, TypeError, OSError):
            pass
    if not tests and "ttcw: no tests file" not in ctx.warnings:
        ctx.warnings.append("ttcw: no tests file (tests/ttcw_all_tests.json): principles are the test categories, not their questions")
    return tests


def _norm_ttcw_stories(df: pl.DataFrame, ctx: Ctx) -> Result:
    res = Result()
    stories = ctx.shared.setdefault("ttcw_stories", {})
    content = pl.col("content")
    link = content.str.strip_chars().str.contains(r"^https?://\S+$")
    checks = [(pl.col(c).is_null(), pl.lit(f"field '{c}': missing or null")) for c in ("story_id", "plot", "content")]
    # the 12 New Yorker stories are links, not texts (not redistributed upstream): a URL is no story to score
    checks.append((link, pl.format("field 'content': a link, not the story text (the New Yorker stories are not redistributed; "
                                   "their annotations are quarantined with them), got {}", content.str.strip_chars())))
    dup = pl.col("story_id").is_duplicated() & (pl.int_range(pl.len()).over("story_id") > 0)
    checks.append((dup, pl.format("field 'story_id': story {} is defined twice", "story_id")))
    good, bad = split_reasons(df, checks)
    res.reject(bad["_line"], bad["reason"])
    stories.update({sid: ("quarantined", line) for sid, line in df.filter(pl.col("_line").is_in(bad["_line"].implode())).select("story_id", "_line").iter_rows()
                    if sid is not None and sid not in stories})
    if good.height == 0:
        return res
    title = pl.col("story_name").fill_null("Untitled")
    good = good.with_columns(pl.format('Write a short story titled "{}". Plot: {}', title, "plot").alias("prompt"))
    good = with_response_ids(good.with_columns(user_context("prompt").alias("context")), "context", "content", "")
    res.add("responses", responses_from(good, context="context", response="content", id_col="id", prompt_id_col="prompt_id", source=ctx.source,
                                        meta={"split": pl.lit(ctx.split, dtype=pl.String), "model": pl.col("story_id").str.split("_").list.last()}))
    stories.update({sid: (rid, line) for sid, rid, line in good.select("story_id", "id", "_line").iter_rows()})
    return res


def _norm_ttcw_verdicts(df: pl.DataFrame, ctx: Ctx, experts: bool) -> Result:
    """Annotations (per expert, with explanations) or the majority file (annotator null)."""
    res = Result()
    stories = ctx.shared.get("ttcw_stories", {})
    tests = _tests(ctx)
    sid = pl.col("story_id")
    rid = sid.replace_strict({k: v[0] for k, v in stories.items() if v[0] != "quarantined"}, default=None, return_dtype=pl.String)
    qline = sid.replace_strict({k: v[1] for k, v in stories.items() if v[0] == "quarantined"}, default=None, return_dtype=pl.Int64)
    verdict = pl.col("binary_verdict").str.strip_chars().str.to_lowercase().replace_strict(YES_NO, default=None, return_dtype=pl.Float64)
    df = df.with_columns(rid.alias("response_id"), qline.alias("_qline"), verdict.alias("fulfilment"))
    checks = [(sid.is_null(), pl.lit("field 'story_id': missing or null")), (pl.col("ttcw_idx").is_null(), pl.lit("field 'ttcw_idx': missing or null")),
              (pl.col("fulfilment").is_null(), pl.format("field 'binary_verdict': expected Yes or No, got {}", pl.col("binary_verdict").fill_null("null")))]
    if experts:
        checks.append((pl.col("expert_idx").is_null(), pl.lit("field 'expert_idx': missing or null")))
    checks += [(pl.col("_qline").is_not_null(), pl.format("field 'story_id': its story was quarantined in the stories file, got {} (line {} there)", sid, "_qline")),
               (pl.col("response_id").is_null(), pl.format("field 'story_id': story {} is not in the stories file (give ttcw_short_stories.json in the same call)", sid))]
    df, bad = split_reasons(df, checks)
    res.reject(bad["_line"], bad["reason"])
    if df.height == 0:
        return res
    idx = pl.col("ttcw_idx").cast(pl.String)
    question = idx.replace_strict({k: v["question"] for k, v in tests.items()}, default=None, return_dtype=pl.String)
    from_tests = idx.replace_strict({k: v["category"] for k, v in tests.items()}, default=None, return_dtype=pl.String)
    category = pl.coalesce(pl.col("category"), from_tests) if "category" in df.columns else from_tests
    df = df.with_columns(category.fill_null(pl.format("ttcw test {}", idx)).alias("_category"))
    verdicts = df.select("_line", pl.coalesce(question, pl.col("_category")).alias("principle"), "fulfilment",
                         (pl.col("explanation") if experts else pl.lit(None, dtype=pl.String)).alias("explanation"), slug_expr("_category").alias("_attr"))
    annotator = pl.format("ttcw:expert{}", "expert_idx") if experts else pl.lit(None, dtype=pl.String)
    ids = df.select("_line", "response_id", annotator.alias("annotator_id"))
    if experts:
        return add_criteria(res, ids, verdicts, ctx, attribute=pl.col("_attr"))
    # the majority file: consensus principles only (its ratings would be a fourth "rater")
    rows = verdicts.join(ids, on="_line")
    res.add("principles", rows.select("response_id", "annotator_id", "principle", "fulfilment", "explanation", pl.lit(ctx.source).alias("source"), "_line"))
    return res


def _no_expert(sample: list[dict]) -> bool:
    return not any("expert_idx" in r for r in sample)


register(Format("ttcw-tests", {"ttcw_idx": JSON, "torrance_dimension": pl.String, "category": pl.String, "question": pl.String, "full_prompt": pl.String},
                ("ttcw_idx", "torrance_dimension", "question", "full_prompt"), _norm_ttcw_tests, group="ttcw", order=0,
                description="TTCW tests/ttcw_all_tests.json: the 14 test questions"))
register(Format("ttcw-stories", {"story_idx": JSON, "story_id": pl.String, "story_name": pl.String, "plot": pl.String, "content": pl.String},
                ("story_id", "story_name", "plot", "content"), _norm_ttcw_stories, group="ttcw", order=1,
                description="TTCW stories/ttcw_short_stories.json (link-only New Yorker stories are quarantined)"))
register(Format("ttcw-annotations", {"story_id": pl.String, "expert_idx": pl.Int64, "ttcw_idx": pl.Int64, "category": pl.String,
                                     "binary_verdict": pl.String, "explanation": pl.String},
                ("story_id", "expert_idx", "ttcw_idx", "binary_verdict"), lambda df, c: _norm_ttcw_verdicts(df, c, True), group="ttcw", order=2,
                description="TTCW annotations/ttcw_annotations.json: per-expert Yes/No verdicts with explanations"))
register(Format("ttcw-majority", {"story_id": pl.String, "ttcw_idx": pl.Int64, "binary_verdict": pl.String},
                ("story_id", "ttcw_idx", "binary_verdict"), lambda df, c: _norm_ttcw_verdicts(df, c, False), probe=_no_expert, group="ttcw", order=3,
                description="TTCW annotations/ttcw_majority.json: the majority verdict (consensus principles, annotator null)"))
