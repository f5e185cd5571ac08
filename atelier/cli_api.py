"""`atelier api`: the HTTP API (bots/api) on ATELIER_API_HOST:ATELIER_API_PORT, with /healthz and /metrics
on ATELIER_METRICS_PORT when set. Run as many as wanted behind a load balancer: they share the queue, the
database, the blob store and the rate limits (all in Redis or PostgreSQL), and keep no state of their own.
Jobs are run by `atelier worker` processes, as for the chat bots."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from atelier.settings import Settings

log = logging.getLogger(__name__)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    sub.add_parser(
        "api",
        help="run the HTTP API (/v1) on ATELIER_API_HOST:ATELIER_API_PORT",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def api_services(settings: Settings, runtime):  # (Settings, Runtime) -> bots.api.services.ApiServices
    """The API's clients, from the process's settings and runtime."""
    from bots.api.services import ApiServices, RateLimits, parse_networks

    return ApiServices(
        redis=runtime.redis,
        registry=runtime.registry,
        blobs=runtime.blobs,
        queue_name=settings.queue_name,
        tiers=settings.load_tiers(),
        tiny_models=settings.tiny_models,
        loras_dir=settings.loras_dir,
        limits=RateLimits(
            key_rate=settings.api_key_rate,
            key_burst=settings.api_key_burst,
            address_rate=settings.api_address_rate,
            address_burst=settings.api_address_burst,
            trusted_proxies=parse_networks(settings.api_trusted_proxies),
        ),
        settings=settings,
    )


def app_for(settings: Settings, runtime):  # -> aiohttp.web.Application
    """The API application on this runtime (what `atelier api` serves; tests serve it in-process)."""
    from bots.api.app import build_app

    return build_app(api_services(settings, runtime))


async def _api(settings: Settings, args: argparse.Namespace) -> int:
    from aiohttp import web

    from atelier.cli import UsageError
    from atelier.observability import health_server
    from atelier.runtime import Runtime
    from bots.api.services import parse_networks

    try:
        parse_networks(settings.api_trusted_proxies)
    except ValueError as exc:
        raise UsageError(f"ATELIER_API_TRUSTED_PROXIES: {exc}") from None
    # Every API process also sends due webhooks (jobs.webhooks), so deliveries go on while any process lives.
    async with Runtime.open(settings) as runtime, runtime.webhook_sweeper().running():
        runner = web.AppRunner(app_for(settings, runtime), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.api_host, settings.api_port).start()
            log.info("HTTP API listening on http://%s:%s/v1", settings.api_host, settings.api_port)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            async with health_server(settings.metrics_host, settings.metrics_port, runtime.services_answer):
                await stop.wait()
        finally:
            await runner.cleanup()
    return 0


COMMANDS = {"api": _api}
