"""Edits of one message, coalesced to a platform's rate: at most one every `interval_s`, latest state wins.

`show(content)` never waits: it stores the content and, if no send is scheduled, schedules one for the first
moment the interval allows. Contents shown meanwhile replace each other, so a slow or rate-limited platform
costs intermediate frames, never the caller's time. A failed edit is logged and skipped: the next state
replaces it. A final content (done, failed) is sent like the others and ends the stream: later ones are ignored.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Send = Callable[[dict, bool], Awaitable[None]]  # (content, final) -> None


class CoalescedEdits:
    def __init__(
        self, send: Send, *, interval_s: float, name: str = "", clock: Callable[[], float] = time.monotonic
    ):
        self._send, self._interval_s, self._name, self._clock = send, interval_s, name, clock
        self._pending: dict | None = None
        self._pending_final = False
        self._closed = False  # a final content was shown
        self._last_sent = -math.inf
        self._task: asyncio.Task | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def show(self, content: dict, *, final: bool = False) -> None:
        """Make `content` the next edit; a later call before it is sent replaces it."""
        if self._closed:
            return
        self._pending, self._pending_final = content, final
        self._closed = final
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def wait(self) -> None:
        """Until every shown content has been sent (or failed)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _drain(self) -> None:
        while self._pending is not None:
            delay = self._last_sent + self._interval_s - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            content, final = self._pending, self._pending_final
            self._pending = None
            try:
                await self._send(content, final)
            except Exception:
                log.warning("edit of %s failed; the next state replaces it", self._name, exc_info=True)
            finally:
                # Counted from the end of the edit, so one that was slow or retried after a 429 still leaves
                # the whole interval before the next.
                self._last_sent = self._clock()
