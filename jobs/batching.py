"""Batching on a worker: concurrent text-to-image jobs that can share a pipeline call run as one.

arq runs up to `max_jobs` job coroutines at once; each imagine producer hands its request to the worker's one
`GpuBatcher` and awaits its images. Whenever the GPU thread is free, the batcher takes the oldest waiting
request and every waiting request with the same batch key (same model, size, steps, guidance, LoRAs), up to
`max_images` images, and runs them as one `txt2img_batch` call. A lone request is never held back: it runs as
soon as the GPU is free, and requests arriving meanwhile form the next batch. So that the next batch is
complete when the current one ends, a worker that batches takes twice `max_images` jobs at once.

Cancelling is per request: a job whose coroutine is cancelled leaves the queue, or, already in a running batch,
is dropped from it at the next step (the engine keeps generating for the others). The engine knows nothing of
this module; this module imports no torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from jobs import gpu_time

if TYPE_CHECKING:
    from PIL import Image

    from engine.generate import ProgressFn, TextToImage
    from engine.registry import Preset


class BatchEngine(Protocol):
    """What the batcher needs from the engine."""

    def batch_key(self, preset: Preset, request: TextToImage) -> Hashable: ...

    def txt2img_batch(
        self,
        preset: Preset,
        requests: Sequence[TextToImage],
        progress: Sequence[ProgressFn | None] | None = None,
    ) -> list[list[Image.Image] | BaseException]: ...


class RequestDropped(Exception):
    """Raised from a dropped request's progress callback, so the engine stops generating for it."""


@dataclass(eq=False)
class _Waiting:
    preset: Preset
    request: TextToImage
    progress: ProgressFn | None
    key: Hashable
    future: asyncio.Future = field(repr=False)
    meter: gpu_time.GpuMeter | None = field(default=None, repr=False)

    def report(self, step: int, total: int, preview: Image.Image | None) -> None:
        """The progress callback the engine gets (on the GPU thread): the job's own, until it is cancelled."""
        if self.future.cancelled():
            raise RequestDropped("the job was cancelled")
        if self.progress is not None:
            self.progress(step, total, preview)


class GpuBatcher:
    """One per worker: groups waiting compatible requests into batched calls on the GPU thread.

    The batch is chosen on the GPU thread when it becomes free (work of other kinds may be queued there
    first), so it holds every compatible request that arrived until then. The waiting list is shared between
    the event loop and that thread, under a lock.
    """

    def __init__(self, engine: BatchEngine, executor: Executor, *, max_images: int) -> None:
        if max_images < 1:
            raise ValueError(f"max_images must be at least 1 (1: no batching), got {max_images}")
        self.engine = engine
        self.executor = executor
        self.max_images = max_images
        self.batch_sizes: Counter[int] = Counter()
        """How many calls ran with how many requests, e.g. {4: 2} for two batches of four."""
        self._lock = threading.Lock()
        self._waiting: list[_Waiting] = []
        self._running: list[_Waiting] = []
        self._drain: asyncio.Task | None = None

    @property
    def waiting(self) -> int:
        """Requests waiting for the GPU thread."""
        with self._lock:
            return len(self._waiting)

    async def txt2img(
        self, preset: Preset, request: TextToImage, progress: ProgressFn | None = None
    ) -> list[Image.Image]:
        """The request's images, generated alone or with compatible requests; what the engine raised for it
        (a ValueError, or what `progress` raised) is raised here."""
        loop = asyncio.get_running_loop()
        key = self.engine.batch_key(preset, request)
        waiting = _Waiting(preset, request, progress, key, loop.create_future(), gpu_time.current())
        with self._lock:
            self._waiting.append(waiting)
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._run_batches())
        try:
            return await waiting.future
        finally:
            with self._lock:
                if waiting in self._waiting:  # cancelled before its batch started
                    self._waiting.remove(waiting)

    async def _run_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while self.waiting:
            batch, results = await loop.run_in_executor(self.executor, self._run_next)
            for waiting, result in zip(batch, results, strict=True):
                if waiting.future.done():
                    continue
                if isinstance(result, BaseException):
                    waiting.future.set_exception(result)
                else:
                    waiting.future.set_result(result)

    def _run_next(self) -> tuple[list[_Waiting], list[list[Image.Image] | BaseException]]:
        """On the GPU thread: take the next batch and run it."""
        with self._lock:
            batch = self._take()
            self._running = batch
            if batch:
                self.batch_sizes[len(batch)] += 1
        if not batch:
            return [], []
        started = time.perf_counter()
        try:
            results = self.engine.txt2img_batch(
                batch[0].preset, [waiting.request for waiting in batch], [waiting.report for waiting in batch]
            )
        except Exception as error:  # the whole call failed (a LoRA that does not fit, out of memory, …)
            results = [error] * len(batch)
        finally:
            with self._lock:
                self._running = []
        # Each member is charged its share of the call, by images.
        elapsed, images = time.perf_counter() - started, sum(w.request.count for w in batch)
        for waiting in batch:
            if waiting.meter is not None:
                waiting.meter.charge(elapsed * waiting.request.count / images)
        return batch, results

    def _take(self) -> list[_Waiting]:
        """The oldest live request and, in arrival order, each compatible one that still fits the cap."""
        self._waiting = [waiting for waiting in self._waiting if not waiting.future.cancelled()]
        if not self._waiting:
            return []
        first = self._waiting[0]
        batch, images = [first], first.request.count
        for waiting in self._waiting[1:]:
            if waiting.key == first.key and images + waiting.request.count <= self.max_images:
                batch.append(waiting)
                images += waiting.request.count
        self._waiting = [waiting for waiting in self._waiting if waiting not in batch]
        return batch

    async def aclose(self) -> None:
        """Stop batching: every waiting or running request is cancelled (a running batch stops at its next
        step)."""
        with self._lock:
            pending = [*self._waiting, *self._running]
        for waiting in pending:
            waiting.future.cancel()
        if self._drain is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
