"""Dynamic micro-batching: requests put their token ids on a queue; one worker takes the first
waiting request, gathers more until `max_batch_size` sequences or `max_wait_ms` have passed, runs
them through the model in one call (length-bucketed inside `Scorer.logits`) on a single inference
thread, and hands each caller its own rows back, in order. Throughput then grows with load."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class _Job:
    ids: list[list[int]]
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class ModelFailure(RuntimeError):
    """The model raised while scoring (answered with 503)."""


class MicroBatcher:
    def __init__(self, run_model: Callable[[list[list[int]]], np.ndarray], max_batch_size: int = 64, max_wait_ms: float = 5.0,
                 on_batch: Callable[[int, int], None] | None = None):
        self.run_model = run_model
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.on_batch = on_batch  # metrics hook: (sequences, requests)
        self.queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self.pending = 0  # sequences waiting or being scored (the queue-depth gauge)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rm-infer")
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Finish what is queued, then stop the worker (graceful shutdown)."""
        if self._task is not None:
            await self.queue.put(None)
            await self._task
            self._task = None
        self._executor.shutdown(wait=True)

    async def submit(self, ids: list[list[int]]) -> np.ndarray:
        if not ids:
            return np.zeros((0, 0))
        if self._task is None or self._task.done():
            raise ModelFailure("the scoring worker is not running")
        fut = asyncio.get_running_loop().create_future()
        self.pending += len(ids)
        await self.queue.put(_Job(ids, fut))
        return await fut

    async def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs, n, stop = [first], len(first.ids), False
        deadline = time.perf_counter() + self.max_wait
        while n < self.max_batch_size:
            try:
                job = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), left)
                except asyncio.TimeoutError:
                    break
            if job is None:
                stop = True
                break
            jobs.append(job)
            n += len(job.ids)
        return jobs, stop

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            first = await self.queue.get()
            if first is None:
                break
            jobs, stop = await self._gather(first)
            ids = [x for j in jobs for x in j.ids]
            try:
                logits = await loop.run_in_executor(self._executor, self.run_model, ids)
            except Exception as exc:  # noqa: BLE001  (any model error becomes a 503 for its callers)
                log.exception("model failure on a batch of %d sequences", len(ids))
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(ModelFailure(f"the model failed on this batch: {type(exc).__name__}"))
            else:
                start = 0
                for j in jobs:
                    if not j.future.done():  # the caller may have gone away
                        j.future.set_result(logits[start : start + len(j.ids)])
                    start += len(j.ids)
            finally:
                self.pending -= len(ids)
            if self.on_batch:
                self.on_batch(len(ids), len(jobs))
