"""The scoring API's routes, one APIRouter per family: `service` (health, model, metrics), `scoring`
(/v1/score, /v1/compare, /v1/principles) and `trainers` (the RLHF trainers' own protocols). The run,
the batcher and the app's settings come in as dependencies; create_app includes the routers."""

from __future__ import annotations

import time

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..scoring import Item, Scorer, sigmoid
from . import schemas as S
from .batcher import MicroBatcher
from .settings import Settings
from .trainers import ProtocolError, openrlhf_text, rendered_text, responses_conversation


# (async: FastAPI runs a plain `def` dependency on its thread pool, a hop per request for a lookup)
async def get_scorer(request: Request) -> Scorer:
    """The run loaded in the lifespan (the first replica's Scorer)."""
    return request.app.state.scorer


async def get_batcher(request: Request) -> MicroBatcher:
    return request.app.state.batcher


async def get_app_settings(request: Request) -> Settings:
    """The settings create_app was built with (not re-read from the environment)."""
    return request.app.state.settings


def _limit(settings: Settings, n: int, what: str = "items") -> None:
    if n > settings.max_items:
        raise HTTPException(413, f"at most {settings.max_items} {what} per request, got {n}")


async def _logits(sc: Scorer, batcher: MicroBatcher, items: list[Item]):
    try:
        ids, truncated = await run_in_threadpool(sc.encode, items)
    except Exception as exc:  # noqa: BLE001  (a chat template may reject a conversation: the client's input)
        raise HTTPException(422, f"the conversation cannot be rendered with the model's chat template: {exc}") from None
    return await batcher.submit(ids), truncated


async def _texts(sc: Scorer, batcher: MicroBatcher, texts: list[str], what: str):
    try:
        ids, truncated = await run_in_threadpool(sc.encode_texts, texts)
    except Exception as exc:  # noqa: BLE001  (a chat template may reject a conversation: the client's input)
        raise HTTPException(422, f"{what} cannot be rendered with the model's chat template: {exc}") from None
    logits = await batcher.submit(ids) if ids else np.zeros((0, sc.model.config.num_labels))
    return logits, ids


def _outputs(sc: Scorer, logits: np.ndarray) -> np.ndarray:
    """Each row's outputs with the reward last, as verl reads it: a one-output model's logit;
    a regression model's attributes and then their weighted reward; a mean-variance model's
    log-variance and then its mean."""
    r = sc.rewards(logits)[:, None]
    if sc.objective == "meanvar":
        return np.concatenate([logits[:, 1:], logits[:, :1]], axis=1)
    return logits if logits.shape[1] == 1 else np.concatenate([logits, r], axis=1)


async def _pooling(sc: Scorer, batcher: MicroBatcher, settings: Settings, bos, body: S._OpenInput):
    texts = body.texts()
    _limit(settings, len(texts), "inputs")
    logits, ids = await _texts(sc, batcher, [rendered_text(sc, t, bos) for t in texts], "an input")
    n = sum(len(x) for x in ids)
    return _outputs(sc, logits), {"prompt_tokens": n, "total_tokens": n, "completion_tokens": 0}


service = APIRouter()


@service.get("/healthz", response_model=S.Health, tags=["service"])
async def healthz(sc: Scorer = Depends(get_scorer)):
    """200 once the model is loaded."""
    return {"status": "ok", "model": sc.name}


@service.get("/v1/models", response_model=S.ModelsResponse, tags=["service"])
async def models(sc: Scorer = Depends(get_scorer)):
    """The loaded model: objective, output attributes and weights, backbone, max length."""
    return {"data": [sc.info()]}


@service.get("/metrics", response_class=PlainTextResponse, tags=["service"])
async def prometheus(request: Request):
    """Prometheus text: requests, errors, latency histogram, batch sizes, queue depth."""
    return PlainTextResponse(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


scoring = APIRouter()


@scoring.post("/v1/score", response_model=S.ScoreResponse, response_model_exclude_none=False, tags=["scoring"])
async def score(body: S.ScoreRequest, sc: Scorer = Depends(get_scorer), batcher: MicroBatcher = Depends(get_batcher),
                settings: Settings = Depends(get_app_settings)):
    """Reward per item (logits @ weights); attributes for regression models, uncertainty for mean-var
    models, probability for principle models; `truncated` when the text was cut to max length."""
    _limit(settings, len(body.items))
    items = [Item(it.context(), it.response, it.principle) for it in body.items]
    logits, truncated = await _logits(sc, batcher, items)
    return {"model": sc.name, "scores": sc.results(logits, truncated)}


@scoring.post("/v1/compare", response_model=S.CompareResponse, tags=["scoring"])
async def compare(body: S.CompareRequest, sc: Scorer = Depends(get_scorer), batcher: MicroBatcher = Depends(get_batcher),
                  settings: Settings = Depends(get_app_settings)):
    """P(response A better than B) per item."""
    n = len(body.items)
    _limit(settings, n)
    items = [Item(it.context(), it.response_a) for it in body.items] + [Item(it.context(), it.response_b) for it in body.items]
    logits, truncated = await _logits(sc, batcher, items)
    a, b = logits[:n], logits[n:]
    p = sc.prefer_a(a, b)
    ra, rb = sc.rewards(a), sc.rewards(b)
    return {"model": sc.name, "results": [{"p_a_better": float(p[i]), "reward_a": float(ra[i]), "reward_b": float(rb[i]),
                                           "truncated": bool(truncated[i] or truncated[n + i])} for i in range(n)]}


@scoring.post("/v1/principles", response_model=S.PrinciplesResponse, tags=["scoring"])
async def principles(body: S.PrinciplesRequest, sc: Scorer = Depends(get_scorer), batcher: MicroBatcher = Depends(get_batcher),
                     settings: Settings = Depends(get_app_settings)):
    """P(the response satisfies each principle), for principle models (RLBFF)."""
    if sc.objective != "principle":
        raise HTTPException(400, f"the loaded model is a {sc.objective!r} model; /v1/principles needs a principle model (--objective principle)")
    flat = [(i, Item(it.context(), it.response, p)) for i, it in enumerate(body.items) for p in it.principles]
    _limit(settings, len(flat), "(response, principle) judgements")
    logits, truncated = await _logits(sc, batcher, [x for _, x in flat])
    out = [{"principles": []} for _ in body.items]
    for (i, item), row, tr in zip(flat, logits, truncated):
        z = float(row[0])
        out[i]["principles"].append({"principle": item.principle, "logit": z, "probability": float(sigmoid(z)), "truncated": bool(tr)})
    return {"model": sc.name, "results": out}


trainers = APIRouter()


@trainers.post("/get_reward", response_model=S.GetRewardResponseFull, tags=["trainers"])
async def get_reward(body: S.GetRewardRequest, sc: Scorer = Depends(get_scorer), batcher: MicroBatcher = Depends(get_batcher),
                     settings: Settings = Depends(get_app_settings)):
    """OpenRLHF's remote reward model (`--remote_rm_url .../get_reward`). Each query is prompt +
    response as the policy rendered it (see trainers.openrlhf_text). `rewards`: the raw rewards;
    `scores`: the same in [0, 1] (Scorer.unit_scores: for BT models the Bradley-Terry probability
    of beating a response at the training mean reward); `extra_logs`: per-attribute values of
    regression models, the uncertainty of mean-variance models."""
    _limit(settings, len(body.query))
    texts = [openrlhf_text(sc, q, (body.prompts[i] if body.prompts and i < len(body.prompts) else None)) for i, q in enumerate(body.query)]
    logits, _ = await _texts(sc, batcher, texts, "a query")
    return {"rewards": sc.rewards(logits).tolist(), "scores": sc.unit_scores(logits).tolist(),
            "extra_logs": {k: v.tolist() for k, v in sc.components(logits).items()}}


@trainers.post("/classify", response_model=S.ClassifyResponse, tags=["trainers"])
async def classify(body: S.ClassifyRequest, request: Request, sc: Scorer = Depends(get_scorer), batcher: MicroBatcher = Depends(get_batcher),
                   settings: Settings = Depends(get_app_settings)):
    """vLLM's classification API, as verl's reward loop calls it (`rollout.name: vllm`): texts already
    rendered with this model's chat template, leading BOS stripped (put back here, as vLLM does).
    `probs[-1]` is the reward, equal to /v1/score's for the same conversation; a sigmoid of each
    output when `activation`/`use_activation` is true."""
    out, usage = await _pooling(sc, batcher, settings, request.app.state.bos, body)
    if body.use_activation or body.activation:
        out = sigmoid(out)
    labels = list(sc.attributes) + (["reward"] if out.shape[1] > len(sc.attributes) else [])
    if sc.objective == "meanvar":
        labels = ["log_var", "reward"]
    data = [{"index": i, "label": labels[int(np.argmax(row))] if len(labels) == len(row) else "reward", "probs": row.tolist(),
             "num_classes": len(row)} for i, row in enumerate(out)]
    return {"id": f"classify-{time.time_ns():x}", "created": int(time.time()), "model": body.model or sc.name, "data": data, "usage": usage}


@trainers.post("/v1/embeddings", response_model=S.EmbeddingsResponse, tags=["trainers"])
async def embeddings(body: S.EmbeddingsRequest, request: Request, sc: Scorer = Depends(get_scorer), batcher: MicroBatcher = Depends(get_batcher),
                     settings: Settings = Depends(get_app_settings)):
    """SGLang's embeddings API for reward models, as verl's reward loop calls it (`rollout.name:
    sglang`): rendered texts in, `data[i].embedding[-1]` = the reward."""
    out, usage = await _pooling(sc, batcher, settings, request.app.state.bos, body)
    return {"model": body.model or sc.name, "data": [{"index": i, "embedding": row.tolist()} for i, row in enumerate(out)], "usage": usage}


@trainers.post("/verify", tags=["trainers"])
async def verify(body: S.VerifyRequest, sc: Scorer = Depends(get_scorer), batcher: MicroBatcher = Depends(get_batcher)):
    """NeMo Gym resource-server verify: the policy's OpenAI Responses request and its Response
    in, the same payload back with `reward` and `reward_components` (attributes of a regression
    model, the uncertainty of a mean-variance model, the reward itself otherwise)."""
    try:
        context, text = responses_conversation(body.responses_create_params, body.response)
    except ProtocolError as exc:
        raise HTTPException(422, str(exc)) from None
    logits, truncated = await _logits(sc, batcher, [Item(context, text)])
    comps = {k: float(v[0]) for k, v in sc.components(logits).items()} or {"reward": float(sc.rewards(logits)[0])}
    return {**body.model_dump(), "reward": float(sc.rewards(logits)[0]), "reward_components": comps, "truncated": bool(truncated[0])}
