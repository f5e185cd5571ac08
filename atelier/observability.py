"""Logging set-up and the small HTTP server every long-running process exposes: `/metrics` and `/healthz`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

HealthCheck = Callable[[], Awaitable[bool]]


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@contextlib.asynccontextmanager
async def health_server(host: str, port: int, healthy: HealthCheck) -> AsyncIterator[None]:
    """`start_http` while the block runs, when `port` is set (0: no server); cleaned up after."""
    if not port:
        yield
        return
    runner = await start_http(host, port, healthy)
    try:
        yield
    finally:
        await runner.cleanup()


async def start_http(host: str, port: int, healthy: HealthCheck) -> web.AppRunner:
    """Serve /metrics (Prometheus text format) and /healthz (200 when `healthy()` is true, else 503)."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        try:
            ok = await healthy()
        except Exception as exc:  # a health check that raises is a failed health check
            return web.Response(status=503, text=f"unhealthy: {type(exc).__name__}")
        return web.Response(status=200 if ok else 503, text="ok" if ok else "unhealthy")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
