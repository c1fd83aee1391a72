"""The scoring API: `create_app(settings)` builds the FastAPI app and includes the routers of
rm_training/api/routes.py; the run is loaded once in the lifespan, requests are scored through the
micro-batcher, and one ASGI guard in front of every route does authentication (Bearer keys,
constant-time comparison), the body-size limit, the body read timeout and the Prometheus request metrics. Run it with `helpsteer serve --model RUN`."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from ..scoring import Scorer
from . import routes
from .batcher import MicroBatcher, ModelFailure
from .settings import Settings, get_settings
from .trainers import template_bos

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

    app.state.settings, app.state.metrics = settings, metrics
    routers = (routes.service, routes.scoring, routes.trainers)
    for router in routers:
        app.include_router(router)

    # the metrics' route label: each route's path (FastAPI lists an included router as one entry of app.routes)
    paths = {r.path for r in app.routes if hasattr(r, "path")} | {r.path for router in routers for r in router.routes}
    app.add_middleware(Guard, settings=settings, metrics=metrics, routes=paths)
    return app
