"""Dynamic micro-batching: requests put their token ids on a queue; a worker takes the first
waiting request, gathers more until `max_batch_size` sequences or `max_wait_ms` have passed, runs
them through the model in one call (length-bucketed inside `Scorer.logits`) on its inference
thread, and hands each caller its own rows back, in order. Throughput then grows with load. With
several model replicas (GPUs, or CPU threads) there is one worker per replica on the one queue:
whichever replica is free takes the next batch, so none idles while requests wait."""

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
    def __init__(self, run_model: Callable[[list[list[int]]], np.ndarray] | list[Callable], max_batch_size: int = 64, max_wait_ms: float = 5.0,
                 on_batch: Callable[[int, int], None] | None = None, threads: int | None = None):
        """run_model: one callable per replica (or one). threads: torch intra-op threads of each
        inference thread (None: torch's default)."""
        self.replicas = list(run_model) if isinstance(run_model, (list, tuple)) else [run_model]
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.on_batch = on_batch  # metrics hook: (sequences, requests)
        self.queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self.pending = 0  # sequences waiting or being scored (the queue-depth gauge)
        init = None
        if threads:
            import torch

            def init():
                torch.set_num_threads(threads)
        self._executors = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rm-infer-{k}", initializer=init) for k in range(len(self.replicas))]
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(k)) for k in range(len(self.replicas))]

    async def stop(self) -> None:
        """Finish what is queued, then stop the workers (graceful shutdown): one None per worker,
        and a worker that takes one stops after its batch."""
        if self._tasks:
            for _ in self._tasks:
                await self.queue.put(None)
            await asyncio.gather(*self._tasks)
            self._tasks = []
        for ex in self._executors:
            ex.shutdown(wait=True)

    async def submit(self, ids: list[list[int]]) -> np.ndarray:
        if not ids:
            return np.zeros((0, 0))
        if not self._tasks or all(t.done() for t in self._tasks):
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

    async def _loop(self, k: int) -> None:
        loop = asyncio.get_running_loop()
        run_model, executor = self.replicas[k], self._executors[k]
        stop = False
        while not stop:
            first = await self.queue.get()
            if first is None:
                break
            jobs, stop = await self._gather(first)
            ids = [x for j in jobs for x in j.ids]
            try:
                logits = await loop.run_in_executor(executor, run_model, ids)
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
