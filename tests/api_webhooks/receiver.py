"""A local webhook receiver: an aiohttp server on a free loopback port that checks every request's signature with
`jobs.webhooks.verify` (as a client's receiver would) and records what it was sent."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from jobs.webhooks import EVENT_HEADER, ID_HEADER, SIGNATURE_HEADER, verify
from tests.support import free_port


@dataclass(frozen=True)
class Received:
    path: str
    webhook_id: str
    event: str
    signed: bool  # the signature verified with the key's secret
    body: dict
    at: float


@dataclass
class Receiver:
    """`answers`: statuses to answer in turn (then 200). `hold`: while set, requests wait unanswered (a receiver
    that hangs). `secret`: the webhook secret signatures are checked with."""

    secret: str = ""
    answers: list[int] = field(default_factory=list)
    hold: asyncio.Event | None = None
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        signed = verify(self.secret, request.headers.get(SIGNATURE_HEADER, ""), raw)
        got = Received(
            request.path,
            request.headers.get(ID_HEADER, ""),
            request.headers.get(EVENT_HEADER, ""),
            signed,
            json.loads(raw),
            time.monotonic(),
        )
        async with self._arrived:
            self.received.append(got)
            self._arrived.notify_all()
        if self.hold is not None:
            await self.hold.wait()
        status = self.answers.pop(0) if self.answers else 200
        if status in (301, 302, 307, 308):
            return web.Response(status=status, headers={"Location": "/elsewhere"})
        return web.Response(status=status)

    async def wait_for(self, check: Callable[[list[Received]], bool], within: float = 60) -> list[Received]:
        """Wait (bounded) until `check(received)` holds; return what was received."""
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: check(self.received))
        return list(self.received)


async def start_receiver(receiver: Receiver) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    receiver.port = free_port()
    await web.TCPSite(runner, "127.0.0.1", receiver.port).start()
    return runner


async def until(check: Callable[[], Awaitable[Any]], within: float = 30, what: str = "condition") -> Any:
    """Poll the async `check()` until it returns something truthy, and return that; TimeoutError after `within`."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise TimeoutError(f"timed out after {within:.0f} s waiting for {what}")
