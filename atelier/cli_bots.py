"""`atelier discord` and `atelier slack`: the chat front-ends, each with its /healthz and /metrics when
ATELIER_METRICS_PORT is set."""

from __future__ import annotations

import argparse
import asyncio
import signal

from atelier.cli import UsageError
from atelier.settings import Settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from bots.discord.guide import HELP as DISCORD_HELP  # plain text; discord.py is imported only to run
    from bots.slack.guide import HELP as SLACK_HELP  # plain text too: slack-bolt is imported only to run

    sub.add_parser(
        "slack",
        help="run the Slack app (Socket Mode with ATELIER_SLACK_APP_TOKEN, else HTTP)",
        description=SLACK_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    sub.add_parser(
        "discord",
        help="run the Discord bot (/imagine, buttons); needs ATELIER_DISCORD_TOKEN",
        description=DISCORD_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


async def _slack(settings: Settings, args: argparse.Namespace) -> int:
    from atelier.observability import health_server
    from atelier.runtime import Runtime
    from bots.slack.app import SlackConnection, run
    from bots.slack.config import SlackConfig
    from bots.slack.services import SlackServices

    try:
        config = SlackConfig(
            bot_token=settings.secret("slack_bot_token") or "",
            signing_secret=settings.secret("slack_signing_secret"),
            app_token=settings.secret("slack_app_token"),
            api_base=settings.slack_api_base,
            host=settings.slack_host,
            port=settings.slack_port,
            admins=frozenset(settings.slack_admins),
            operators=frozenset(settings.slack_operators),
            reactions=dict(settings.slack_reactions),
        )
    except ValueError as exc:
        raise UsageError(exc) from None

    async with Runtime.open(settings) as runtime:
        connection = SlackConnection()
        services = SlackServices(
            redis=runtime.redis,
            registry=runtime.registry,
            queue_name=settings.queue_name,
            blobs=runtime.blobs,
            tiny_models=settings.tiny_models,
            tiers=settings.load_tiers(),
            loras_dir=settings.loras_dir,
            train_queue_name=settings.train_queue_name,
        )

        async def healthy() -> bool:
            return await runtime.services_answer() and await connection.up()

        async with health_server(settings.metrics_host, settings.metrics_port, healthy):
            await run(config, services, connection=connection)
    return 0


async def _discord(settings: Settings, args: argparse.Namespace) -> int:
    import discord

    from atelier.observability import health_server
    from atelier.runtime import Runtime
    from bots.discord.client import AtelierBot, BotConfig, configure_endpoints

    token = settings.secret("discord_token")
    if not token:
        raise UsageError(
            "set ATELIER_DISCORD_TOKEN (or ATELIER_DISCORD_TOKEN_FILE) to your bot's token; "
            "`atelier discord --help` shows where to find it"
        )
    configure_endpoints(settings.discord_api_base, settings.discord_gateway_url)
    async with Runtime.open(settings) as runtime:
        config = BotConfig(
            redis=runtime.redis,
            registry=runtime.registry,
            blobs=runtime.blobs,
            queue_name=settings.queue_name,
            tiny_models=settings.tiny_models,
            guild_ids=tuple(settings.discord_guild_ids),
            admin_role=settings.discord_admin_role,
            operators=frozenset(settings.discord_operators),
            loras_dir=settings.loras_dir,
            train_queue_name=settings.train_queue_name,
            tiers=settings.load_tiers(),
        )
        try:
            async with AtelierBot(config) as bot:

                async def healthy() -> bool:
                    return await runtime.services_answer() and bot.is_ready() and not bot.is_closed()

                # SIGTERM/SIGINT close the bot, so this process leaves the services it joined (the embedded
                # Redis stops with its last user) instead of dying with them held.
                loop = asyncio.get_running_loop()
                closing: set[asyncio.Task] = set()
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(signum, lambda: closing.add(loop.create_task(bot.close())))
                async with health_server(settings.metrics_host, settings.metrics_port, healthy):
                    await bot.start(token)
        except discord.LoginFailure:
            raise UsageError("Discord refused the token (401): copy it again from the Bot page") from None
    return 0


COMMANDS = {"slack": _slack, "discord": _discord}
