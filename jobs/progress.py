"""Bridge progress from the GPU thread to the event loop without ever holding up the GPU.

The engine calls `report(step, total, preview)` from its thread; that only stores the latest state and wakes
the pump. The pump, a task on the event loop, sends the latest state to the replier; states that arrive while
a send is in flight are replaced, not queued (latest wins), so a slow platform costs frames, not GPU time.
"""

from __future__ import annotations

import asyncio
import logging

from PIL import Image as PILImage

from jobs.replier import Replier
from storage.models import Job

log = logging.getLogger(__name__)


class ProgressPump:
    def __init__(self, loop: asyncio.AbstractEventLoop, replier: Replier, job: Job) -> None:
        self._loop, self._replier, self._job = loop, replier, job
        self._latest: tuple[int, int, PILImage.Image | None] | None = None
        self._wake = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task | None = None

    def report(self, step: int, total: int, preview: PILImage.Image | None) -> None:
        """Called from the GPU thread after each step."""
        self._latest = (step, total, preview)
        self._loop.call_soon_threadsafe(self._wake.set)

    async def __aenter__(self) -> ProgressPump:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closed = True
        self._wake.set()
        assert self._task is not None
        await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            latest, self._latest = self._latest, None
            if latest is not None:
                try:
                    await self._replier.progress(self._job, *latest)
                except Exception:
                    # A progress frame is disposable: the next one (or the result) replaces it.
                    log.warning("job %s: progress reply failed", self._job.id, exc_info=True)
            if self._closed and self._latest is None:
                return
