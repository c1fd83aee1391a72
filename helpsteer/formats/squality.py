"""Reader for the SQuALITY human evaluation (`data/human-eval/all-responses.jsonl`): 3 systems'
summaries per question, each rated 0-100 on correctness, coverage (the file's "selection") and
overall by 3 reviewers with worker ids, kept on that 0-100 scale.

The question text and the story come from the dataset's own files (`data/v1-3/txt/*.jsonl`, else
`data/v1/*.jsonl`): given in the same call, or found beside the ratings file. The story is the
context's system turn, the question its user turn."""

from __future__ import annotations

import logging

import orjson
import polars as pl

from ..containers import BOM
from ..schema import JSON
from . import Ctx, Format, register
from .common import Result, RowBuilder, iter_records

log = logging.getLogger(__name__)

# the file's attribute names -> ours ("selection" is the paper's coverage: selection of content)
ATTRIBUTES = {"correctness-rating": "correctness", "selection-rating": "coverage", "overall-rating": "overall"}
SCALE = (0.0, 100.0)
SYSTEMS = ("bart", "bart-dpr", "human")


def _add_story(stories: dict, rec: dict) -> None:
    """One line of a SQuALITY split file -> stories[passage_id] = {document, questions, html}.
    A plain-text version (v1-3/txt) wins over the raw HTML one (v1) of the same passage."""
    pid = str((rec.get("metadata") or {}).get("passage_id"))
    doc = rec.get("document") or ""
    html = doc.lstrip().startswith("<")
    if pid in stories and html and not stories[pid]["html"]:
        return
    questions = [q.get("question_text") for q in rec.get("questions") or [] if isinstance(q, dict)]
    stories[pid] = {"document": doc, "questions": questions, "html": html}


def _norm_stories(df: pl.DataFrame, ctx: Ctx) -> Result:
    stories = ctx.shared.setdefault("squality_stories", {})
    b = RowBuilder(ctx)
    for line, r in iter_records(df):
        if not isinstance(r["metadata"], dict) or r["metadata"].get("passage_id") is None or not isinstance(r["questions"], list):
            b.reject(line, "fields 'metadata.passage_id' and 'questions' (a list) are required")
            continue
        _add_story(stories, r)
    return b.result()


def _stories_beside(ctx: Ctx) -> dict:
    """The split files of the same SQuALITY checkout: data/v1-3/txt/*.jsonl, then data/v1/*.jsonl."""
    cache = ctx.shared.setdefault("squality_beside", {})
    if ctx.path is None:
        return {}
    root = ctx.path.resolve().parent.parent  # data/human-eval/all-responses.jsonl -> data/
    if root in cache:
        return cache[root]
    stories: dict = {}
    files = sorted((root / "v1-3" / "txt").glob("*.jsonl")) + sorted((root / "v1").glob("*.jsonl"))
    for f in files:
        try:
            with open(f, "rb") as fh:
                for raw in fh:
                    try:
                        rec = orjson.loads(raw.removeprefix(BOM))  # a byte order mark must not hide the first story
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(rec, dict):
                        _add_story(stories, rec)
        except OSError as e:
            ctx.warnings.append(f"squality: {f} is unreadable ({e.strerror or e}); the questions of its stories are missing")
    cache[root] = stories
    if files:
        log.debug("SQuALITY question texts from %s", ", ".join(str(f) for f in files))
    return stories


def _score(review: dict, key: str):
    v = review.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not SCALE[0] <= v <= SCALE[1]:
        raise ValueError(f"{key} {v!r} is not a number in 0..100")
    return float(v)


def _norm_squality(df: pl.DataFrame, ctx: Ctx) -> Result:
    stories = ctx.shared.get("squality_stories") or _stories_beside(ctx)
    if not stories and "squality: no question texts" not in ctx.warnings:
        ctx.warnings.append("squality: no question texts (give data/v1-3/txt/test.jsonl or data/v1/test.jsonl in the same call, "
                            "or keep the dataset's data/ folder layout); prompts name the passage and question number instead")
    ctx.shared.setdefault("scales", {}).update({a: list(SCALE) for a in ATTRIBUTES.values()})
    b = RowBuilder(ctx)
    for line, r in iter_records(df):
        pid, questions = r["passage-id"], r["questions"]
        if pid is None or not isinstance(questions, dict) or not questions:
            b.reject(line, "field 'questions': expected an object of questions {\"0\": {system: {response, reviews}}, ...}")
            continue
        try:
            rows = _passage(pid, questions, stories.get(pid))
        except ValueError as e:
            b.reject(line, str(e))
            continue
        for turns, system, text, flags, reviews in rows:
            rid, _ = b.response(turns, text, line, model=system)
            if flags:
                b.rows["responses"][-1]["flags"] += flags
            for rv in reviews:
                annotator = f"squality:{rv['worker_id']}"
                for key, attr in ATTRIBUTES.items():
                    b.add("ratings", line, response_id=rid, annotator_id=annotator, attribute=attr, score=float(rv[key]))
                for note in rv.get("annotations") or []:
                    comment = " ".join(note.get("annotation") or []) if isinstance(note, dict) else ""
                    if comment.strip():
                        b.add("feedback", line, response_id=rid, annotator_id=annotator, feedback=f"> {note.get('selection') or ''}\n{comment}")
    return b.result()


def _passage(pid: str, questions: dict, story: dict | None) -> list:
    """(context, system, response, flags, reviews) for every rated response of one passage;
    ValueError naming the field when anything in it is malformed."""
    out = []
    for qkey, systems in sorted(questions.items(), key=lambda kv: int(kv[0]) if str(kv[0]).isdigit() else 0):
        where = f"questions.{qkey}"
        if not str(qkey).isdigit() or not isinstance(systems, dict):
            raise ValueError(f"field '{where}': expected question keys 0, 1, ... holding {{system: {{response, reviews}}}}")
        i = int(qkey)
        question = story["questions"][i] if story and i < len(story["questions"]) else None
        if question:
            turns = [{"role": "system", "content": story["document"]}, {"role": "user", "content": question}]
            flags = []
        else:
            turns = [{"role": "user", "content": f"SQuALITY passage {pid}, question {i + 1}"}]
            flags = ["no_question_text"]
        for system, item in systems.items():
            w = f"{where}.{system}"
            if not isinstance(item, dict) or not isinstance(item.get("response"), str):
                raise ValueError(f"field '{w}.response': expected a string")
            reviews = item.get("reviews")
            if not isinstance(reviews, list) or not reviews:
                raise ValueError(f"field '{w}.reviews': expected a non-empty list")
            for k, rv in enumerate(reviews):
                if not isinstance(rv, dict) or rv.get("worker_id") is None:
                    raise ValueError(f"field '{w}.reviews[{k}].worker_id': missing")
                for key in ATTRIBUTES:
                    try:
                        _score(rv, key)
                    except ValueError as e:
                        raise ValueError(f"field '{w}.reviews[{k}].{key}': {e}") from None
            out.append((turns, system, item["response"], flags, reviews))
    return out


register(Format("squality-stories", {"metadata": JSON, "document": pl.String, "questions": JSON}, ("metadata", "document", "questions"),
                _norm_stories, group="squality", order=0,
                description="SQuALITY split file (v1 or v1-3): question texts and stories for the human-eval ratings"))
register(Format("squality", {"passage-id": pl.String, "questions": JSON}, ("passage-id", "questions"), _norm_squality,
                group="squality", order=1, description="SQuALITY human eval: 0-100 correctness / coverage / overall by 3 reviewers"))
