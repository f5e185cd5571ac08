"""The Discord bot process: a discord.py client with Atelier's slash commands and persistent buttons.

`configure_endpoints` points discord.py at the configured REST base and gateway (an API proxy, or the test
emulator) by setting `discord.http.Route.BASE` and `DiscordWebSocket.DEFAULT_GATEWAY`, the two places
discord.py reads them. Features live in their own modules, each with `setup(bot)`; the bot only wires them.

Under a burst of interactions the bot acknowledges first (issue 10): REST calls, interaction callbacks
included, share a pool of `REST_CONNECTIONS` keep-alive connections instead of opening one per request (500
deferrals at once opened 500 connections, TLS handshakes against discord.com), and admission work (database,
queue) runs at most `ADMISSIONS_AT_ONCE` at a time, so the deferrals still waiting are not queued behind it.
The deferral itself goes out on a lean path with a pool of its own (`acks`). `bench/ack_burst.py` measures them.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import discord
import yarl
from arq.connections import ArqRedis
from discord import app_commands
from discord.gateway import DiscordWebSocket

from bots.discord import (
    admin,
    guided,
    imagine,
    inpaint,
    lora_admin,
    reactions,
    replay,
    review,
    settings,
    upscale,
    views,
)
from bots.discord.acks import Acknowledger
from bots.discord.editclock import EditClock
from bots.discord.guide import invite_url
from bots.discord.metering import MeteredTree, RestWatch, outcome
from bots.metrics import Tally, show_platform
from engine.registry import Registry
from quotas.admin import Admin
from quotas.tiers import Tiers
from storage.blobs import BlobStore

log = logging.getLogger(__name__)

REST_CONNECTIONS = 32
ADMISSIONS_AT_ONCE = 4


@dataclass(frozen=True)
class BotConfig:
    """What the bot's features need, built by the composition root from settings."""

    redis: ArqRedis
    registry: Registry
    blobs: BlobStore  # source images of the U, V and F buttons
    queue_name: str
    tiny_models: bool = False
    guild_ids: tuple[int, ...] = ()
    admin_role: str | None = None
    # ATELIER_DISCORD_OPERATORS: user ids that /atelier lets above the operator's ceilings (quotas.ceilings)
    operators: frozenset[str] = frozenset()
    upscale_emoji: str = reactions.UPSCALE_EMOJI  # a reaction that upscales the message's image
    faces_emoji: str = reactions.FACES_EMOJI  # a reaction that restores its faces
    loras_dir: Path | None = None  # the shared LoRA folder (ATELIER_LORA_DIR), beside each server's own
    train_queue_name: str = "atelier:train"  # where /atelier lora train enqueues
    tiers: Tiers = field(default_factory=Tiers)  # ATELIER_TIERS_FILE's: admission and /atelier tier use them


def configure_endpoints(api_base: str, gateway_url: str) -> None:
    """Send every REST call (interaction webhooks included) and the gateway connection to these URLs."""
    discord.http.Route.BASE = api_base.rstrip("/")
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def intents() -> discord.Intents:
    """Guilds (channels, threads, roles) and reactions; no privileged intent."""
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.guild_reactions = True
    return wanted


class AtelierBot(discord.Client):
    def __init__(self, config: BotConfig) -> None:
        rest_watch = RestWatch()
        super().__init__(
            intents=intents(),
            allowed_mentions=discord.AllowedMentions.none(),
            connector=aiohttp.TCPConnector(limit=REST_CONNECTIONS),
            http_trace=rest_watch.trace(),  # 429s, retries and acknowledgements (see `metering`)
        )
        show_platform("discord")
        self.config = config
        self.admissions = asyncio.Semaphore(ADMISSIONS_AT_ONCE)  # see the module docstring
        self.acks = Acknowledger(rest_watch)  # deferrals, on a lean path and a pool of their own
        self.clock = EditClock(config.redis)
        self.admin = Admin(
            config.redis, config.queue_name, config.tiers, train_queue_name=config.train_queue_name
        )
        self.tree = MeteredTree(self)

    async def setup_hook(self) -> None:
        await self.acks.start()
        imagine.setup(self)
        guided.setup(self)
        upscale.setup(self)
        replay.setup(self)
        inpaint.setup(self)
        lora_admin.setup(self)
        admin.setup(self)
        review.setup(self)
        settings.setup(self)
        views.setup(self)
        await self._sync_commands()

    async def _sync_commands(self) -> None:
        """Register the commands with Discord: in the configured guilds (instant), else globally."""
        if not self.config.guild_ids:
            synced = await self.tree.sync()
            log.info("discord: %d commands registered globally", len(synced))
            return
        for guild_id in self.config.guild_ids:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("discord: %d commands registered in guild %s", len(synced), guild_id)

    async def close(self) -> None:
        await super().close()
        await self.acks.close()

    async def on_app_command_completion(
        self, interaction: discord.Interaction, command: app_commands.Command | app_commands.ContextMenu
    ) -> None:
        outcome(interaction, "answered")  # unless the command said started or refused

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        tally = Tally("discord", "reaction")
        try:
            await reactions.on_reaction(self, payload, tally)
        except Exception:
            tally.say("error")
            log.exception("discord: reaction %s on message %s failed", payload.emoji, payload.message_id)

    async def on_ready(self) -> None:
        # What start-up loaded (discord.py, pydantic, the registry: ~110k objects) lives as long as the
        # process: moved out of the collector's sight, a full collection during a burst no longer walks it all
        # (500 interactions: p99 to acknowledge 289 → 152 ms in bench/ack_burst.py).
        gc.collect()
        gc.freeze()
        log.info(
            "discord: ready as %s in %d servers; invite: %s",
            self.user,
            len(self.guilds),
            invite_url(self.application_id),
        )
        await self.change_presence(activity=discord.CustomActivity(name="Type /imagine"))
