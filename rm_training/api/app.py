"""The scoring API: `create_app(settings)` builds the FastAPI app; the run is loaded once in the
lifespan, requests are scored through the micro-batcher, and one ASGI guard in front of every
route does authentication (Bearer keys, constant-time comparison), the body-size limit, the body read
timeout and the Prometheus request metrics. Run it with `helpsteer serve --model RUN`."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry, disable_created_metrics, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..scoring import Item, Scorer
from . import schemas as S
from .batcher import MicroBatcher, ModelFailure
from .trainers import ProtocolError, openrlhf_text, rendered_text, responses_conversation, template_bos
from .settings import Settings, get_settings

log = logging.getLogger(__name__)

OPEN_PATHS = {"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
# Swagger UI and ReDoc scripts, styles and favicon, served from the fastapi-offline package: /docs
# and /redoc render with no network (FastAPI's defaults load them from a CDN)
DOCS_ASSETS = "/docs-assets"
# nginx's code for "client closed the request": counted so, not as a server error
CLIENT_CLOSED = 499


class Metrics:
    def __init__(self):
        disable_created_metrics()  # the *_created series only add noise to scrapes
        self.registry = CollectorRegistry()
        self.requests = Counter("helpsteer_requests", "HTTP requests by route and status code", ["route", "status"], registry=self.registry)
        self.errors = Counter("helpsteer_request_errors", "HTTP responses with status >= 400 by route and status", ["route", "status"], registry=self.registry)
        self.latency = Histogram("helpsteer_request_latency_seconds", "Request latency in seconds by route", ["route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.batch_size = Histogram("helpsteer_batch_size", "Sequences per model forward call (micro-batch)", registry=self.registry,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
        self.batch_requests = Histogram("helpsteer_batch_requests", "Requests merged into one model call", registry=self.registry,
                                        buckets=(1, 2, 4, 8, 16, 32, 64))
        self.queue_depth = Gauge("helpsteer_queue_depth", "Sequences waiting for or in the model", registry=self.registry)
        self.items = Counter("helpsteer_sequences_scored", "Sequences scored", registry=self.registry)


def _reply(status: int, detail: str, headers: dict | None = None):
    body = JSONResponse({"detail": detail}, status_code=status, headers=headers)
    return body


class Guard:
    """ASGI middleware: auth, body-size limit, body timeout and request metrics for every HTTP route."""

    def __init__(self, app, settings: Settings, metrics: Metrics, routes: set[str]):
        self.app, self.settings, self.metrics, self.routes = app, settings, metrics, routes
        self.keys = [k.encode() for k in settings.keys()]

    def _authorised(self, headers: dict) -> bool:
        got = headers.get(b"authorization", b"")
        scheme, _, token = got.partition(b" ")
        ok = False
        for k in self.keys:  # every key compared, in constant time each: no early exit to time
            ok |= hmac.compare_digest(token.strip(), k)
        return ok and scheme.lower() == b"bearer"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        route = path if path in self.routes else (DOCS_ASSETS if path.startswith(DOCS_ASSETS + "/") else "other")
        start = time.perf_counter()
        status = {"code": 500}

        async def send_status(msg):
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
            await send(msg)

        try:
            headers = dict(scope.get("headers") or [])
            open_path = path in OPEN_PATHS or path.startswith(DOCS_ASSETS + "/")
            if self.keys and not open_path and not self._authorised(headers):
                resp = _reply(401, "missing or wrong API key: send Authorization: Bearer <key>", {"WWW-Authenticate": "Bearer"})
                return await resp(scope, receive, send_status)
            limit = self.settings.max_body_bytes
            try:
                declared = int(headers.get(b"content-length", b"0") or 0)
            except ValueError:
                return await _reply(400, "the Content-Length header is not a number")(scope, receive, send_status)
            if declared > limit:
                return await _reply(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")(scope, receive, send_status)
            # read the body here (it is small) so a chunked upload cannot exceed the limit either
            chunks, size, more = [], 0, True
            deadline = time.monotonic() + self.settings.timeout_body
            while more:
                try:
                    msg = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
                except TimeoutError:  # a client that stalls mid-body must not hold the connection
                    return await _reply(408, f"the request body was not received within {self.settings.timeout_body:g} s",
                                        {"Connection": "close"})(scope, receive, send_status)
                if msg["type"] == "http.disconnect":  # the client went away mid-body: nothing to answer
                    status["code"] = CLIENT_CLOSED
                    return
                chunk = msg.get("body", b"")
                size += len(chunk)
                if size > limit:
                    return await _reply(413, f"request body exceeds the limit of {limit} bytes")(scope, receive, send_status)
                chunks.append(chunk)
                more = msg.get("more_body", False)
            body = b"".join(chunks)
            if scope["method"] == "POST" and b"json" not in headers.get(b"content-type", b""):
                # every POST body here is JSON: accept it when a client (curl -d) labels it otherwise
                scope = dict(scope, headers=[(k, v) for k, v in scope.get("headers") or [] if k != b"content-type"]
                             + [(b"content-type", b"application/json")])
            sent = False

            async def replay():
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_status)
        finally:
            code = status["code"]
            self.metrics.requests.labels(route, str(code)).inc()
            if code >= 400:
                self.metrics.errors.labels(route, str(code)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)


def _sentence(exc: RequestValidationError) -> str:
    errs = exc.errors()
    if not errs:
        return "the request body is not valid"
    e = errs[0]
    if e.get("type") == "json_invalid":
        return f"the request body is not valid JSON: {e.get('ctx', {}).get('error', e.get('msg'))}"
    loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
    msg = e.get("msg", "invalid").removeprefix("Value error, ")
    if e.get("type") == "extra_forbidden":
        msg = "unknown field"
    more = f" (and {len(errs) - 1} more problems)" if len(errs) > 1 else ""
    return f"{loc}: {msg}{more}"


def create_app(settings: Settings | None = None, scorer: Scorer | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        import torch

        if settings.threads:
            torch.set_num_threads(settings.threads)
        scorers = [scorer] * settings.replicas if scorer is not None else []
        if not scorers:
            if not settings.model:
                raise RuntimeError("no model: set HELPSTEER_MODEL or pass --model RUN")
            for dev, dt in settings.placements():
                # one copy of the weights per GPU; CPU replicas share one (inference only reads it)
                same = next((s for s in scorers if next(s.model.parameters()).device == dev), None)
                scorers.append(same or Scorer(settings.model, device=dev, dtype=dt, batch_size=settings.max_batch_size,
                                              max_tokens=settings.max_batch_tokens, max_length=settings.max_length or None))
        for s in scorers:
            s.batch_size = settings.max_batch_size
        sc = scorers[0]
        threads = settings.threads
        if not threads and len(scorers) > 1 and next(sc.model.parameters()).device.type == "cpu":
            threads = max(1, torch.get_num_threads() // len(scorers))  # CPU replicas split the cores, not oversubscribe them

        def on_batch(n, reqs):
            metrics.batch_size.observe(n)
            metrics.batch_requests.observe(reqs)
            metrics.items.inc(n)

        batcher = MicroBatcher([s.logits for s in scorers], settings.max_batch_size, settings.max_wait_ms, on_batch, threads=threads or None)
        metrics.queue_depth.set_function(lambda: batcher.pending)
        await batcher.start()
        app.state.scorer, app.state.batcher, app.state.bos = sc, batcher, template_bos(sc)
        log.info("serving %s (%s) with micro-batches of up to %d on %s", sc.run, sc.objective, settings.max_batch_size,
                 ", ".join(f"{next(s.model.parameters()).device} {next(s.model.parameters()).dtype}" for s in scorers))
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPIOffline(static_url=DOCS_ASSETS, title="helpsteer reward scoring API", version="1", lifespan=lifespan,
                         description="Rewards, attribute scores, uncertainties, pairwise preferences and principle judgements from a "
                                     "reward model trained with `helpsteer train`; the RLHF trainers' own protocols: OpenRLHF's /get_reward, "
                                     "vLLM's /classify and SGLang's /v1/embeddings (verl), NeMo Gym's /verify.")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _sentence(exc)}, status_code=422)

    @app.exception_handler(ModelFailure)
    async def _failed(request: Request, exc: ModelFailure):
        return JSONResponse({"detail": f"{exc}; see the server log"}, status_code=503)

    def _limit(n: int, what: str = "items") -> None:
        if n > settings.max_items:
            raise HTTPException(413, f"at most {settings.max_items} {what} per request, got {n}")

    async def _encode(sc: Scorer, items: list[Item]):
        try:
            return await run_in_threadpool(sc.encode, items)
        except Exception as exc:  # noqa: BLE001  (a chat template may reject a conversation: the client's input)
            raise HTTPException(422, f"the conversation cannot be rendered with the model's chat template: {exc}") from None

    async def _logits(request: Request, items: list[Item]):
        sc: Scorer = request.app.state.scorer
        ids, truncated = await _encode(sc, items)
        logits = await request.app.state.batcher.submit(ids)
        return sc, logits, truncated

    @app.get("/healthz", response_model=S.Health, tags=["service"])
    async def healthz(request: Request):
        """200 once the model is loaded."""
        return {"status": "ok", "model": request.app.state.scorer.name}

    @app.get("/v1/models", response_model=S.ModelsResponse, tags=["service"])
    async def models(request: Request):
        """The loaded model: objective, output attributes and weights, backbone, max length."""
        return {"data": [request.app.state.scorer.info()]}

    @app.get("/metrics", response_class=PlainTextResponse, tags=["service"])
    async def prometheus():
        """Prometheus text: requests, errors, latency histogram, batch sizes, queue depth."""
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/score", response_model=S.ScoreResponse, response_model_exclude_none=False, tags=["scoring"])
    async def score(body: S.ScoreRequest, request: Request):
        """Reward per item (logits @ weights); attributes for regression models, uncertainty for mean-var
        models, probability for principle models; `truncated` when the text was cut to max length."""
        _limit(len(body.items))
        items = [Item(it.context(), it.response, it.principle) for it in body.items]
        sc, logits, truncated = await _logits(request, items)
        return {"model": sc.name, "scores": sc.results(logits, truncated)}

    @app.post("/v1/compare", response_model=S.CompareResponse, tags=["scoring"])
    async def compare(body: S.CompareRequest, request: Request):
        """P(response A better than B) per item."""
        n = len(body.items)
        _limit(n)
        items = [Item(it.context(), it.response_a) for it in body.items] + [Item(it.context(), it.response_b) for it in body.items]
        sc, logits, truncated = await _logits(request, items)
        a, b = logits[:n], logits[n:]
        p = sc.prefer_a(a, b)
        ra, rb = sc.rewards(a), sc.rewards(b)
        return {"model": sc.name, "results": [{"p_a_better": float(p[i]), "reward_a": float(ra[i]), "reward_b": float(rb[i]),
                                               "truncated": bool(truncated[i] or truncated[n + i])} for i in range(n)]}

    @app.post("/v1/principles", response_model=S.PrinciplesResponse, tags=["scoring"])
    async def principles(body: S.PrinciplesRequest, request: Request):
        """P(the response satisfies each principle), for principle models (RLBFF)."""
        sc: Scorer = request.app.state.scorer
        if sc.objective != "principle":
            raise HTTPException(400, f"the loaded model is a {sc.objective!r} model; /v1/principles needs a principle model (--objective principle)")
        flat = [(i, Item(it.context(), it.response, p)) for i, it in enumerate(body.items) for p in it.principles]
        _limit(len(flat), "(response, principle) judgements")
        sc, logits, truncated = await _logits(request, [x for _, x in flat])
        out = [{"principles": []} for _ in body.items]
        for (i, item), row, tr in zip(flat, logits, truncated):
            z = float(row[0])
            out[i]["principles"].append({"principle": item.principle, "logit": z, "probability": float(1 / (1 + np.exp(-np.clip(z, -60, 60)))),
                                         "truncated": bool(tr)})
        return {"model": sc.name, "results": out}

    @app.post("/get_reward", response_model=S.GetRewardResponseFull, tags=["trainers"])
    async def get_reward(body: S.GetRewardRequest, request: Request):
        """OpenRLHF's remote reward model (`--remote_rm_url .../get_reward`). Each query is prompt +
        response as the policy rendered it (see trainers.openrlhf_text). `rewards`: the raw rewards;
        `scores`: the same in [0, 1] (Scorer.unit_scores: for BT models the Bradley-Terry probability
        of beating a response at the training mean reward); `extra_logs`: per-attribute values of
        regression models, the uncertainty of mean-variance models."""
        _limit(len(body.query))
        sc: Scorer = request.app.state.scorer
        texts = [openrlhf_text(sc, q, (body.prompts[i] if body.prompts and i < len(body.prompts) else None)) for i, q in enumerate(body.query)]
        logits, _ = await _texts(request, texts, "a query")
        return {"rewards": sc.rewards(logits).tolist(), "scores": sc.unit_scores(logits).tolist(),
                "extra_logs": {k: v.tolist() for k, v in sc.components(logits).items()}}

    async def _texts(request: Request, texts: list[str], what: str):
        sc: Scorer = request.app.state.scorer
        try:
            ids, truncated = await run_in_threadpool(sc.encode_texts, texts)
        except Exception as exc:  # noqa: BLE001  (a chat template may reject a conversation: the client's input)
            raise HTTPException(422, f"{what} cannot be rendered with the model's chat template: {exc}") from None
        logits = await request.app.state.batcher.submit(ids) if ids else np.zeros((0, sc.model.config.num_labels))
        return logits, ids

    def _outputs(sc: Scorer, logits: np.ndarray) -> np.ndarray:
        """Each row's outputs with the reward last, as verl reads it: a one-output model's logit;
        a regression model's attributes and then their weighted reward; a mean-variance model's
        log-variance and then its mean."""
        r = sc.rewards(logits)[:, None]
        if sc.objective == "meanvar":
            return np.concatenate([logits[:, 1:], logits[:, :1]], axis=1)
        return logits if logits.shape[1] == 1 else np.concatenate([logits, r], axis=1)

    async def _pooling(request: Request, body: S._OpenInput):
        sc: Scorer = request.app.state.scorer
        texts = body.texts()
        _limit(len(texts), "inputs")
        bos = request.app.state.bos
        logits, ids = await _texts(request, [rendered_text(sc, t, bos) for t in texts], "an input")
        n = sum(len(x) for x in ids)
        return sc, _outputs(sc, logits), {"prompt_tokens": n, "total_tokens": n, "completion_tokens": 0}

    @app.post("/classify", response_model=S.ClassifyResponse, tags=["trainers"])
    async def classify(body: S.ClassifyRequest, request: Request):
        """vLLM's classification API, as verl's reward loop calls it (`rollout.name: vllm`): texts already
        rendered with this model's chat template, leading BOS stripped (put back here, as vLLM does).
        `probs[-1]` is the reward, equal to /v1/score's for the same conversation; a sigmoid of each
        output when `activation`/`use_activation` is true."""
        sc, out, usage = await _pooling(request, body)
        if body.use_activation or body.activation:
            out = 1 / (1 + np.exp(-np.clip(out, -60, 60)))
        labels = list(sc.attributes) + (["reward"] if out.shape[1] > len(sc.attributes) else [])
        if sc.objective == "meanvar":
            labels = ["log_var", "reward"]
        data = [{"index": i, "label": labels[int(np.argmax(row))] if len(labels) == len(row) else "reward", "probs": row.tolist(),
                 "num_classes": len(row)} for i, row in enumerate(out)]
        return {"id": f"classify-{time.time_ns():x}", "created": int(time.time()), "model": body.model or sc.name, "data": data, "usage": usage}

    @app.post("/v1/embeddings", response_model=S.EmbeddingsResponse, tags=["trainers"])
    async def embeddings(body: S.EmbeddingsRequest, request: Request):
        """SGLang's embeddings API for reward models, as verl's reward loop calls it (`rollout.name:
        sglang`): rendered texts in, `data[i].embedding[-1]` = the reward."""
        sc, out, usage = await _pooling(request, body)
        return {"model": body.model or sc.name, "data": [{"index": i, "embedding": row.tolist()} for i, row in enumerate(out)], "usage": usage}

    @app.post("/verify", tags=["trainers"])
    async def verify(body: S.VerifyRequest, request: Request):
        """NeMo Gym resource-server verify: the policy's OpenAI Responses request and its Response
        in, the same payload back with `reward` and `reward_components` (attributes of a regression
        model, the uncertainty of a mean-variance model, the reward itself otherwise)."""
        try:
            context, text = responses_conversation(body.responses_create_params, body.response)
        except ProtocolError as exc:
            raise HTTPException(422, str(exc)) from None
        sc, logits, truncated = await _logits(request, [Item(context, text)])
        comps = {k: float(v[0]) for k, v in sc.components(logits).items()} or {"reward": float(sc.rewards(logits)[0])}
        return {**body.model_dump(), "reward": float(sc.rewards(logits)[0]), "reward_components": comps, "truncated": bool(truncated[0])}

    routes = {r.path for r in app.routes}
    app.add_middleware(Guard, settings=settings, metrics=metrics, routes=routes)
    return app
