"""The Slack app: a bolt `AsyncApp` with Atelier's middleware and listeners, served over Socket Mode or HTTP.

Socket Mode (an app-level token is set) needs no public URL: the app opens a WebSocket to the URL that
`apps.connections.open` returns on the configured API base. HTTP mode serves `POST /slack/events` for slash
commands, events and interactivity alike, each request verified against the signing secret by bolt (forged or
stale requests get 401 and reach no listener), plus `GET /healthz`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp

from bots.metrics import show_platform
from bots.slack import (
    actions,
    admin_command,
    guided,
    imagine,
    inpaint,
    inpaint_command,
    loop,
    reactions,
    replay_shortcut,
    review,
    settings_command,
    shortcuts,
    train_shortcut,
    upscale_command,
)
from bots.slack.client import web_client
from bots.slack.config import EVENTS_PATH, SlackConfig
from bots.slack.dedupe import event_deduplicator
from bots.slack.metering import listener_failed, meter_requests
from bots.slack.services import SlackServices
from bots.slack.workspace import attach_workspace

log = logging.getLogger(__name__)


def create_app(config: SlackConfig, services: SlackServices) -> AsyncApp:
    """The bolt app with every Atelier listener; serving it is `run`'s job."""
    app = AsyncApp(
        name="atelier",
        client=web_client(config.bot_token, config.api_base),
        # Socket Mode requests come over the authenticated WebSocket and are not signed; HTTP ones always are.
        signing_secret=config.signing_secret or "",
    )
    show_platform("slack")
    app.middleware(meter_requests)  # first: it times the ack of every request (see `metering`)
    app.error(listener_failed)
    app.middleware(event_deduplicator(services.redis))
    app.middleware(attach_workspace)
    imagine.register(app, services)
    guided.register(app, services)
    actions.register(app, config, services)
    loop.register(app, services)
    settings_command.register(app, services)
    reactions.register(app, config, services)
    shortcuts.register(app, services)
    replay_shortcut.register(app, services)
    admin_command.register(app, config, services)
    review.register(app, config, services)
    upscale_command.register(app, services)
    inpaint.register(app, services)
    inpaint_command.register(app, services)
    train_shortcut.register(app, config, services)
    return app


class SlackConnection:
    """Whether the app is connected to Slack now (for /healthz): set by `run` once it serves."""

    def __init__(self) -> None:
        self._probe: Callable[[], Awaitable[bool]] | None = None

    def serving(self, probe: Callable[[], Awaitable[bool]]) -> None:
        self._probe = probe

    async def up(self) -> bool:
        return self._probe is not None and await self._probe()


async def run(
    config: SlackConfig,
    services: SlackServices,
    stop: asyncio.Event | None = None,
    connection: SlackConnection | None = None,
) -> None:
    """Serve the app until `stop` is set (by default: until SIGINT or SIGTERM); `connection` then tells
    whether it is connected (Socket Mode: the WebSocket is open; HTTP mode: it is listening)."""
    stop = stop or _stop_on_signals()
    connection = connection or SlackConnection()
    app = create_app(config, services)
    # Fail at start, with Slack's reason, on a bad bot token or API base, instead of on the first command.
    identity = await app.client.auth_test()
    log.info(
        "slack: signed in to team %s as %s",
        identity.get("team") or identity.get("team_id"),
        identity.get("user"),
    )
    if config.socket_mode:
        await _serve_socket_mode(app, config, stop, connection)
    else:
        await _serve_http(app, config, stop, connection)


async def _serve_http(
    app: AsyncApp, config: SlackConfig, stop: asyncio.Event, connection: SlackConnection
) -> None:
    async def events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await app.async_dispatch(await to_bolt_request(request)))

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    web_app = web.Application()
    web_app.router.add_post(EVENTS_PATH, events)
    web_app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port).start()
        log.info("slack: HTTP mode, listening on http://%s:%d%s", config.host, config.port, EVENTS_PATH)
        connection.serving(_always_up)
        await stop.wait()
    finally:
        await runner.cleanup()


async def _always_up() -> bool:
    return True


async def _serve_socket_mode(
    app: AsyncApp, config: SlackConfig, stop: asyncio.Event, connection: SlackConnection
) -> None:
    handler = AsyncSocketModeHandler(app, config.app_token, web_client=app.client)
    try:
        # Asked once here so a bad app token stops the process with Slack's error; the client's own connect loop
        # would retry it forever.
        handler.client.wss_uri = await handler.client.issue_new_wss_url()
        await handler.connect_async()
        log.info("slack: Socket Mode, connected")
        connection.serving(handler.client.is_connected)
        await stop.wait()
    finally:
        await handler.close_async()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    return stop
