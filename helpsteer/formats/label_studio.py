"""Label Studio exports (JSON and JSON_MIN) -> per-annotator ratings, preferences, feedback and
principle labels. The same reader serves `helpsteer ingest --format label-studio` and
`helpsteer annotate pull` (which passes the server's user id -> email map in ctx.shared).

Conventions (../shared/CONTRACT.md): every numeric Choices other than `preference` is a rating
attribute named after its `from_name`; `preference` is a strength in -3..3 (negative = A better);
`justification` is its text; `feedback` a free-text feedback; `fulfilment` a Yes/No principle
label. Cancelled annotations are skipped; of an annotator's several annotations of one task the
latest (updated_at, then id) is kept. Task `data` holds `prompt` or `messages`, and `response`
or `response_a` + `response_b`."""

from __future__ import annotations

import math

import polars as pl

from ..schema import HELPSTEER_ATTRIBUTES, JSON
from . import Ctx, Format, register
from .common import Result, RowBuilder, iter_records

RATING_RANGES = {a: (0, 4) for a in HELPSTEER_ATTRIBUTES}
_TEXT_FIELDS = {"justification", "feedback"}
_PRINCIPLE_FIELDS = {"fulfilment", "fulfillment", "principle_label"}
_YES_NO = {"yes": 1.0, "no": 0.0, "true": 1.0, "false": 0.0}
_MIN_META = {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "drafts", "predictions", "meta"}


class AnnotationError(ValueError):
    pass


def _number(text) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _context(data: dict) -> list[dict]:
    msgs = data.get("messages")
    if isinstance(msgs, list) and msgs:
        turns = []
        for m in msgs:
            if not (isinstance(m, dict) and isinstance(m.get("content"), str)):
                raise AnnotationError("field 'data.messages': every message needs a string 'content'")
            turns.append({"role": str(m.get("role") or "user"), "content": m["content"]})
        return turns
    prompt = data.get("prompt")
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    raise AnnotationError("field 'data': needs 'prompt' (string) or 'messages' (list of {role, content})")


def annotator_id(completed_by, users: dict) -> str:
    """Email where known (export with user details, or the users API map), else label-studio:<id>."""
    if isinstance(completed_by, dict):
        if completed_by.get("email"):
            return str(completed_by["email"])
        completed_by = completed_by.get("id")
    if isinstance(completed_by, str) and "@" in completed_by:
        return completed_by
    key = str(completed_by)
    return users.get(key) or users.get(completed_by) or f"label-studio:{key}"


def _values(from_name: str, value) -> dict:
    """One result value -> {'choice': str} or {'text': str}."""
    if isinstance(value, dict):
        if "choices" in value:
            ch = value["choices"]
            if not isinstance(ch, list) or len(ch) != 1:
                raise AnnotationError(f"result '{from_name}': expected exactly one choice, got {ch!r}")
            return {"choice": str(ch[0])}
        if "text" in value:
            t = value["text"]
            return {"text": "\n".join(map(str, t)) if isinstance(t, list) else str(t)}
        if "rating" in value:
            return {"choice": str(value["rating"])}
        return {}
    if isinstance(value, list):
        if len(value) == 1:
            return {"choice": str(value[0])} if from_name not in _TEXT_FIELDS else {"text": str(value[0])}
        raise AnnotationError(f"result '{from_name}': expected one value, got {value!r}")
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return {"text": str(value)} if from_name in _TEXT_FIELDS else {"choice": str(value)}
    return {}


def _emit(b: RowBuilder, line: int, data: dict, annotator: str, fields: dict[str, dict], task_key: str) -> None:
    """Rows for one annotator's (latest) annotation of one task."""
    context = _context(data)
    pair = "response_a" in data and "response_b" in data
    if pair:
        a_id, pid = b.response(context, str(data["response_a"]), line)
        b_id, _ = b.response(context, str(data["response_b"]), line)
    elif isinstance(data.get("response"), str):
        rid, pid = b.response(context, data["response"], line)
    else:
        raise AnnotationError("field 'data': needs 'response', or 'response_a' and 'response_b'")
    justification = fields.get("justification", {}).get("text")
    for name, v in fields.items():
        if name in _TEXT_FIELDS:
            if name == "feedback" and v.get("text") and not pair:
                b.add("feedback", line, response_id=rid, annotator_id=annotator, feedback=v["text"])
            continue
        choice = v.get("choice")
        if choice is None:
            continue
        if name == "preference":
            s = _number(choice)
            if s is None or s != round(s) or abs(s) > 3:
                raise AnnotationError(f"result 'preference' of {annotator}: choice {choice!r} is not an integer in -3..3")
            if not pair:
                raise AnnotationError("result 'preference' on a task without response_a/response_b")
            b.add("preferences", line, pair_id=str(data.get("pair_id") or f"label-studio:{task_key}"), prompt_id=pid,
                  response_a_id=a_id, response_b_id=b_id, annotator_id=annotator, strength=s, justification=justification, flags=[])
        elif name in _PRINCIPLE_FIELDS:
            label = _YES_NO.get(choice.strip().lower())
            if label is None:
                raise AnnotationError(f"result '{name}' of {annotator}: expected Yes or No, got {choice!r}")
            if pair or not isinstance(data.get("principle"), str):
                raise AnnotationError(f"result '{name}': a principle task needs 'response' and 'principle' in data")
            b.add("principles", line, response_id=rid, annotator_id=annotator, principle=data["principle"], fulfilment=label)
        else:
            s = _number(choice)
            if s is None:
                continue  # a non-numeric Choices (a category tag): not a rating
            lo, hi = RATING_RANGES.get(name, (-math.inf, math.inf))
            if not (lo <= s <= hi):
                raise AnnotationError(f"result '{name}' of {annotator}: choice {choice!r} is out of range {lo}..{hi}")
            if pair:
                raise AnnotationError(f"result '{name}': a rating on a pairwise task")
            b.add("ratings", line, response_id=rid, annotator_id=annotator, attribute=name, score=s)


def _latest(annotations: list[dict]) -> dict[str, dict]:
    """Per annotator key, the latest non-cancelled annotation."""
    keep: dict[str, tuple] = {}
    for ann in annotations:
        if not isinstance(ann, dict) or ann.get("was_cancelled"):
            continue
        who = ann.get("completed_by")
        key = str(who.get("email") or who.get("id")) if isinstance(who, dict) else str(who)
        rank = (str(ann.get("updated_at") or ann.get("created_at") or ""), ann.get("id") or 0)
        if key not in keep or rank >= keep[key][0]:
            keep[key] = (rank, ann)
    return {k: v[1] for k, v in keep.items()}


def _interface(ctx: Ctx):
    """The project's LabelInterface when the labeling config is known (annotate pull passes it)."""
    config = ctx.shared.get("label_studio_config")
    if not config:
        return None
    if "_label_interface" not in ctx.shared:
        from label_studio_sdk.label_interface import LabelInterface

        ctx.shared["_label_interface"] = LabelInterface(config)
    return ctx.shared["_label_interface"]


def _check(li, ann: dict) -> None:
    if li is not None and not li.validate_annotation({"result": ann.get("result") or []}):
        raise AnnotationError(f"annotation {ann.get('id')} does not fit the project's labeling config (a value outside its choices?)")


def _norm_json(df: pl.DataFrame, ctx: Ctx) -> Result:
    users = ctx.shared.get("label_studio_users", {})
    li = _interface(ctx)
    b = RowBuilder(ctx)
    for line, r in iter_records(df):
        data, anns = r["data"], r["annotations"]
        if not isinstance(data, dict):
            b.reject(line, "field 'data': expected an object")
            continue
        if anns is not None and not isinstance(anns, list):
            b.reject(line, "field 'annotations': expected a list")
            continue
        task_key = str(data.get("item_id") or r["id"] or line)
        mark = _mark(b)
        try:
            latest = _latest(anns or [])
            if not latest:
                # an unannotated task still carries its responses
                _emit(b, line, data, "", {}, task_key)
            for _, ann in sorted(latest.items()):
                _check(li, ann)
                fields: dict[str, dict] = {}
                for item in ann.get("result") or []:
                    if not isinstance(item, dict) or "from_name" not in item:
                        raise AnnotationError("field 'annotations.result': each result needs 'from_name' and 'value'")
                    fields[item["from_name"]] = _values(item["from_name"], item.get("value"))
                _emit(b, line, data, annotator_id(ann.get("completed_by"), users), fields, task_key)
        except AnnotationError as e:
            _undo(b, mark)
            b.reject(line, f"task {task_key}: {e}")
    return b.result()


def _norm_min(df: pl.DataFrame, ctx: Ctx) -> Result:
    users = ctx.shared.get("label_studio_users", {})
    b = RowBuilder(ctx)
    rows = [(line, r["__record__"]) for line, r in iter_records(df)]
    # JSON_MIN has one element per annotation: keep each annotator's latest per task
    latest: dict[tuple, tuple] = {}
    for line, rec in rows:
        key = (str(rec.get("item_id") or rec.get("id")), str(rec.get("annotator")))
        rank = (str(rec.get("updated_at") or rec.get("created_at") or ""), rec.get("annotation_id") or 0)
        if key not in latest or rank >= latest[key][0]:
            latest[key] = (rank, line, rec)
    kept = {v[1] for v in latest.values()}
    for line, rec in rows:
        task_key = str(rec.get("item_id") or rec.get("id") or line)
        if line not in kept:
            b.reject(line, f"task {task_key}: superseded by a later annotation of the same annotator")
            continue
        mark = _mark(b)
        try:
            fields = {k: _values(k, v) for k, v in rec.items() if k not in _MIN_META and k not in _DATA_KEYS}
            data = {k: v for k, v in rec.items() if k in _DATA_KEYS}
            _emit(b, line, data, annotator_id(rec.get("annotator"), users), fields, task_key)
        except AnnotationError as e:
            _undo(b, mark)
            b.reject(line, f"task {task_key}: {e}")
    return b.result()


_DATA_KEYS = {"prompt", "messages", "response", "response_a", "response_b", "principle", "item_id", "pair_id", "response_id",
              "response_a_id", "response_b_id", "prompt_id", "domain", "language", "split", "context_text"}


def _mark(b: RowBuilder) -> dict[str, int]:
    return {t: len(rows) for t, rows in b.rows.items()}


def _undo(b: RowBuilder, mark: dict[str, int]) -> None:
    for t, n in mark.items():
        del b.rows[t][n:]


register(Format("label-studio-json", {"id": JSON, "data": JSON, "annotations": JSON}, ("data", "annotations"), _norm_json,
                group="label-studio", order=0, description="Label Studio JSON export (tasks with annotations)"))
register(Format("label-studio-min", {"__record__": JSON}, ("id", "annotator", "annotation_id"), _norm_min,
                group="label-studio", order=0, description="Label Studio JSON_MIN export (one element per annotation)"))
