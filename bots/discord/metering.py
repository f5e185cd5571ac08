"""What the Discord bot counts (see `bots.metrics`): each interaction's outcome, the time to acknowledge it, and
what discord.py's REST client does out of sight (429s and retries).

An interaction's `Tally` lives in its `extras`; its command is the slash command's top-level name (`imagine`,
`atelier` for every `/atelier …`) or a button's kind (`reroll_button`), from the bot's own commands and button
ids only. `launch` says `started` and `refused`; a command that ends without saying anything was `answered`
(`on_app_command_completion`), one that raises is an `error` (`MeteredTree`, `answering` for buttons).

discord.py waits out 429s and retries server errors itself, so the REST client's `http_trace` is where they
can be seen: `RestWatch` reads every response. A request sent again with the method and URL of one just
answered 429 or 5xx (or that failed to connect) is a retry. It also times acknowledgements: every interaction
callback Discord accepted (autocomplete suggestions too: the same 3 s deadline), from the interaction's
snowflake timestamp (when Discord created it). That time includes the gateway's delivery and the bot's own
backlog before its code sees the interaction, as Discord's deadline does; the time the bot received it would
leave both out. The timestamp is Discord's clock read against this machine's: keep the clock synchronised
(NTP); a clock behind Discord's reads as 0.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import OrderedDict
from collections.abc import Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING

import aiohttp
import discord
from discord import app_commands

from bots.discord.components import RESULT_ACTIONS
from bots.metrics import ACK_SECONDS, RATE_LIMITED, RETRIES, Tally

if TYPE_CHECKING:
    from bots.discord.client import AtelierBot

BUTTON = re.compile(rf"atelier:(?P<action>cancel|{'|'.join(RESULT_ACTIONS)}):")
CALLBACK = re.compile(r"/interactions/(?P<id>[0-9]+)/[^/]+/callback$")
WATCHED_FAILURES = 256  # failed requests remembered until they are sent again (a bounded memory)


def command_name(interaction: discord.Interaction) -> str:
    """The interaction's command for the metrics: a top-level slash command's name, a button's kind, or
    `other`."""
    command = interaction.command
    if command is not None:
        return (getattr(command, "root_parent", None) or command).name
    match = BUTTON.match(str((interaction.data or {}).get("custom_id", "")))
    return f"{match['action']}_button" if match else "other"


def outcome(interaction: discord.Interaction, said: str) -> None:
    """Count the interaction's outcome (`bots.metrics.OUTCOMES`); the first said stands."""
    tally = interaction.extras.get("tally")
    if tally is None:
        tally = interaction.extras["tally"] = Tally("discord", command_name(interaction))
    tally.say(said)


@contextlib.contextmanager
def answering(interaction: discord.Interaction) -> Iterator[None]:
    """Around a button's work: `error` if it raises, else `answered` unless it said otherwise."""
    try:
        yield
    except Exception:
        outcome(interaction, "error")
        raise
    outcome(interaction, "answered")


class MeteredTree(app_commands.CommandTree["AtelierBot"]):
    """The command tree, counting a command that raised as an `error` (then logging it as discord.py does)."""

    async def on_error(
        self, interaction: discord.Interaction[AtelierBot], error: app_commands.AppCommandError, /
    ) -> None:
        outcome(interaction, "error")
        await super().on_error(interaction, error)


class RestWatch:
    """Counts the REST client's 429s and retries and times interaction callbacks (see the module docstring)."""

    def __init__(self) -> None:
        self._failed: OrderedDict[tuple[str, str], None] = OrderedDict()

    def trace(self) -> aiohttp.TraceConfig:
        """An `aiohttp.TraceConfig` for `discord.Client(http_trace=...)`."""
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(self._started)
        trace.on_request_end.append(self._ended)
        trace.on_request_exception.append(self._failed_to_send)
        return trace

    def sent(self, method: str, url: str) -> None:
        """A request is going out (the acknowledger's own path reports its deferrals here too)."""
        key = (method, url)
        if key in self._failed:
            del self._failed[key]
            RETRIES.labels("discord").inc()

    def answered(self, method: str, url: str, status: int) -> None:
        if status == 429:
            RATE_LIMITED.labels("discord").inc()
        if status == 429 or status >= 500:
            self._remember(method, url)
        elif status < 300 and method == "POST":
            callback = CALLBACK.search(url.partition("?")[0])
            if callback is not None:
                created = discord.utils.snowflake_time(int(callback["id"])).timestamp()
                ACK_SECONDS.labels("discord").observe(max(0.0, time.time() - created))

    def unanswered(self, method: str, url: str) -> None:
        """The request failed before an answer (could not connect, the connection dropped, no answer in time)."""
        self._remember(method, url)

    async def _started(
        self, _: aiohttp.ClientSession, __: SimpleNamespace, params: aiohttp.TraceRequestStartParams
    ) -> None:
        self.sent(params.method, str(params.url))

    async def _ended(
        self, _: aiohttp.ClientSession, __: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        self.answered(params.method, str(params.url), params.response.status)

    async def _failed_to_send(
        self, _: aiohttp.ClientSession, __: SimpleNamespace, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        self.unanswered(params.method, str(params.url))

    def _remember(self, method: str, url: str) -> None:
        self._failed[(method, url)] = None
        self._failed.move_to_end((method, url))
        while len(self._failed) > WATCHED_FAILURES:
            self._failed.popitem(last=False)
