"""Label Studio exports (JSON and JSON_MIN) -> per-annotator ratings, preferences, feedback and
principle labels. The same reader serves `helpsteer ingest --format label-studio` and
`helpsteer annotate pull` (which passes the server's user id -> email map in ctx.shared).

Conventions (../shared/CONTRACT.md): every numeric Choices other than `preference` is a rating
attribute named after its `from_name`; `preference` is a strength in -3..3 (negative = A better);
`justification` is its text; `feedback` a free-text feedback; `fulfilment` a Yes/No principle
label. Cancelled annotations are skipped; of an annotator's several annotations of one task the
latest (updated_at, then id) is kept. Task `data` holds `prompt` or `messages`, and `response`
or `response_a` + `response_b`.

A task whose data is unusable is quarantined whole; an invalid annotation (a value out of range,
a result that does not fit the labeling config) quarantines only that annotation: the task's
responses and the other annotators' labels are ingested (a `"part": true` quarantine entry)."""

from __future__ import annotations

import math

import polars as pl

from ..labels import YES_NO
from ..schema import HELPSTEER_ATTRIBUTES, JSON
from . import Ctx, Format, register
from .common import Result, RowBuilder, iter_records

RATING_RANGES = {a: (0, 4) for a in HELPSTEER_ATTRIBUTES}
_TEXT_FIELDS = {"justification", "feedback"}
_PRINCIPLE_FIELDS = {"fulfilment", "fulfillment", "principle_label"}
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
    same = users.get(completed_by) if isinstance(completed_by, (int, str)) else None  # a hostile export may give an object
    return users.get(key) or same or f"label-studio:{key}"


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


def _task(b: RowBuilder, line: int, data: dict) -> tuple:
    """The task's response rows; (pair, response id or (a id, b id), prompt id)."""
    context = _context(data)
    if "response_a" in data and "response_b" in data:
        for side in ("response_a", "response_b"):
            if not isinstance(data[side], str):  # an object or list would become its repr: a silent wrong response
                raise AnnotationError(f"field 'data.{side}': expected a string, got {type(data[side]).__name__}")
        a_id, pid = b.response(context, data["response_a"], line)
        b_id, _ = b.response(context, data["response_b"], line)
        return True, (a_id, b_id), pid
    if isinstance(data.get("response"), str):
        rid, pid = b.response(context, data["response"], line)
        return False, rid, pid
    raise AnnotationError("field 'data': needs 'response', or 'response_a' and 'response_b'")


def _emit(b: RowBuilder, line: int, data: dict, annotator: str, fields: dict[str, dict], task_key: str, task: tuple | None = None) -> None:
    """Rows for one annotator's (latest) annotation of one task (and the task's responses unless given)."""
    pair, ids, pid = task or _task(b, line, data)
    a_id, b_id = ids if pair else (None, None)
    rid = None if pair else ids
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
                raise AnnotationError(f"result 'preference': choice {choice!r} is not an integer in -3..3")
            if not pair:
                raise AnnotationError("result 'preference' on a task without response_a/response_b")
            b.add("preferences", line, pair_id=str(data.get("pair_id") or f"label-studio:{task_key}"), prompt_id=pid,
                  response_a_id=a_id, response_b_id=b_id, annotator_id=annotator, strength=s, justification=justification, flags=[])
        elif name in _PRINCIPLE_FIELDS:
            label = YES_NO.get(choice.strip().lower())
            if label is None:
                raise AnnotationError(f"result '{name}': expected Yes or No, got {choice!r}")
            if pair or not isinstance(data.get("principle"), str):
                raise AnnotationError(f"result '{name}': a principle task needs 'response' and 'principle' in data")
            b.add("principles", line, response_id=rid, annotator_id=annotator, principle=data["principle"], fulfilment=label)
        else:
            s = _number(choice)
            if s is None and name not in RATING_RANGES:
                continue  # a non-numeric Choices (a category tag): not a rating
            lo, hi = RATING_RANGES.get(name, (-math.inf, math.inf))
            if s is None or not (lo <= s <= hi):
                raise AnnotationError(f"result '{name}': choice {choice!r} is out of range {lo}..{hi}")
            if pair:
                raise AnnotationError(f"result '{name}': a rating on a pairwise task")
            b.add("ratings", line, response_id=rid, annotator_id=annotator, attribute=name, score=s)


def _int_id(v) -> int:
    """An id for ordering: ints as they are, anything else (missing, text, an object) 0."""
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _latest(annotations: list) -> tuple[dict[str, dict], list[tuple[int, object, str]]]:
    """Per annotator key, the latest non-cancelled annotation; and (position, entry, why) of unusable entries."""
    keep: dict[str, tuple] = {}
    bad: list[tuple[int, object, str]] = []
    for k, ann in enumerate(annotations, start=1):
        if not isinstance(ann, dict):
            bad.append((k, ann, f"expected an object, got {type(ann).__name__}"))
            continue
        if ann.get("was_cancelled") not in (None, True, False):  # "false" as text would read as cancelled
            bad.append((k, ann, f"field 'was_cancelled': expected true or false, got {ann['was_cancelled']!r}"))
            continue
        if ann.get("was_cancelled"):
            continue
        who = ann.get("completed_by")
        key = str(who.get("email") or who.get("id")) if isinstance(who, dict) else str(who)
        rank = (str(ann.get("updated_at") or ann.get("created_at") or ""), _int_id(ann.get("id")))
        if key not in keep or rank >= keep[key][0]:
            keep[key] = (rank, ann)
    return {k: v[1] for k, v in keep.items()}, bad


def _interface(ctx: Ctx):
    """The project's LabelInterface when the labeling config is known (annotate pull passes it)."""
    config = ctx.shared.get("label_studio_config")
    if not config:
        return None
    if "_label_interface" not in ctx.shared:
        from label_studio_sdk.label_interface import LabelInterface

        ctx.shared["_label_interface"] = LabelInterface(config)
    return ctx.shared["_label_interface"]


def _check(li, results: list[dict]) -> None:
    """Each result against the project's labeling config (the server itself accepts any value)."""
    if li is None:
        return
    for item in results:
        try:
            fits = li.validate_annotation({"result": [item]})
        except Exception:  # noqa: BLE001 - the SDK's validators may raise on shapes they do not expect: it does not fit
            fits = False
        if not fits:
            name = item["from_name"]
            control = next((c for c in li.controls if c.name == name), None)
            allowed = getattr(control, "labels", None)
            what = f"allowed: {', '.join(map(str, allowed))}" if allowed else "it has no such control" if control is None else "invalid there"
            raise AnnotationError(f"result '{name}': value {item.get('value')!r} does not fit the project's labeling config ({what})")


def _fields(ann: dict) -> tuple[list[dict], dict[str, dict]]:
    """An annotation's results and {from_name: {'choice'|'text': str}}."""
    results = ann.get("result") or []
    if not isinstance(results, list):
        raise AnnotationError(f"field 'result': expected a list, got {type(results).__name__}")
    fields: dict[str, dict] = {}
    for k, item in enumerate(results, start=1):
        if not isinstance(item, dict) or "from_name" not in item:
            raise AnnotationError(f"field 'result' (item {k}): each result needs 'from_name' and 'value'")
        name = item["from_name"]
        if not isinstance(name, str):
            raise AnnotationError(f"field 'result.from_name' (item {k}): expected the name of a control (a string), got {name!r}")
        fields[name] = _values(name, item.get("value"))
    return results, fields


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
            task = _task(b, line, data)  # an unannotated task still carries its responses
        except AnnotationError as e:
            _undo(b, mark)
            b.reject(line, f"task {task_key}: {e}")
            continue
        latest, bad = _latest(anns or [])
        for k, entry, why in bad:
            b.reject_part(line, f"task {task_key}, annotation {k} of the task: {why}", entry)
        # each annotation stands alone: an invalid one is quarantined, the others are kept
        for _, ann in sorted(latest.items()):
            who = annotator_id(ann.get("completed_by"), users)
            mark = _mark(b)
            try:
                results, fields = _fields(ann)
                _emit(b, line, data, who, fields, task_key, task)
                _check(li, results)
            except AnnotationError as e:
                _undo(b, mark)
                b.reject_part(line, f"task {task_key}, annotation {ann.get('id')!r} by {who}: {e}", ann)
    return b.result()


def _norm_min(df: pl.DataFrame, ctx: Ctx) -> Result:
    users = ctx.shared.get("label_studio_users", {})
    b = RowBuilder(ctx)
    rows = [(line, r["__record__"]) for line, r in iter_records(df)]
    # JSON_MIN has one element per annotation: keep each annotator's latest per task
    latest: dict[tuple, tuple] = {}
    for line, rec in rows:
        key = (str(rec.get("item_id") or rec.get("id")), str(rec.get("annotator")))
        rank = (str(rec.get("updated_at") or rec.get("created_at") or ""), _int_id(rec.get("annotation_id")))
        if key not in latest or rank >= latest[key][0]:
            latest[key] = (rank, line, rec)
    kept = {v[1] for v in latest.values()}
    for line, rec in rows:
        task_key = str(rec.get("item_id") or rec.get("id") or line)
        if line not in kept:
            b.reject(line, f"task {task_key}: superseded by a later annotation of the same annotator")
            continue
        data = {k: v for k, v in rec.items() if k in _DATA_KEYS}
        mark = _mark(b)
        try:
            task = _task(b, line, data)
        except AnnotationError as e:
            _undo(b, mark)
            b.reject(line, f"task {task_key}: {e}")
            continue
        # an invalid annotation quarantines itself, as in the JSON export: the task's responses stay
        who = annotator_id(rec.get("annotator"), users)
        mark = _mark(b)
        try:
            fields = {k: _values(k, v) for k, v in rec.items() if k not in _MIN_META and k not in _DATA_KEYS}
            _emit(b, line, data, who, fields, task_key, task)
        except AnnotationError as e:
            _undo(b, mark)
            b.reject_part(line, f"task {task_key}, annotation {rec.get('annotation_id')!r} by {who}: {e}", rec)
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
