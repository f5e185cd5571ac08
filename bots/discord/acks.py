"""The deferral ("thinking…"), sent on a lean path of its own: the one response Discord times (3 s).

Under a burst the bot's time per interaction is what decides how late the last one is acknowledged, and
discord.py's `InteractionResponse.defer` builds a route, a per-webhook lock and a JSON body for every call, then
aiohttp builds a request around it. Here the body is one constant and the request goes out on
`bots.discord.ackhttp`'s keep-alive connections, a pool of its own (`ACK_CONNECTIONS`), so an acknowledgement
never waits behind the bot's other REST calls (status edits, threads, follow-ups). Once it is sent, discord.py
is told (its `InteractionResponse` records the response type), so every later call on the interaction
(follow-ups, `edit_original_response`, `is_done()`) behaves as after its own defer. The REST watch
(`bots.discord.metering.RestWatch`) sees it as it sees discord.py's requests: 429s, retries, the time to
acknowledge.

Under a burst, what follows each acknowledgement (building the spec, admission, the database) waits until no
deferral is waiting or in flight (`settled`, at most `SETTLE_S`): the acknowledgements of the whole burst go
out first, and the last of them is not queued behind the others' admission work.

A failure that discord.py would retry (a 5xx, a 429, a dropped connection, no answer within `ACK_TIMEOUT_S`) is
handed to discord.py's `defer`, which retries it; if the first attempt had reached Discord after all, the
retry is told "already acknowledged" (40060) and the message is looked up instead. `bench/ack_burst.py`
measures the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import discord

from bots.discord.ackhttp import OriginPool, TransportError
from bots.discord.metering import RestWatch
from bots.discord.rest import USER_AGENT

ACK_CONNECTIONS = 16
ACK_TIMEOUT_S = 10.0  # past Discord's 3 s the interaction is lost anyway; discord.py's retry then says so
DEFER_THINKING = b'{"type":5}'  # DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE: a public "thinking…" message
ALREADY_ACKNOWLEDGED = 40060
SETTLE_S = 1.0  # the longest the work after an acknowledgement yields to the acknowledgements still to send


class Acknowledger:
    def __init__(self, watch: RestWatch) -> None:
        self._watch = watch
        self._pool: OriginPool | None = None
        self._in_flight = 0
        self._settled = asyncio.Event()
        self._settled.set()

    async def start(self) -> None:
        """Connect to the REST base discord.py uses (`discord.http.Route.BASE`, set by `configure_endpoints`)."""
        self._pool = OriginPool(
            discord.http.Route.BASE,
            limit=ACK_CONNECTIONS,
            headers={"User-Agent": USER_AGENT, "Content-Type": "application/json"},
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def defer_thinking(self, interaction: discord.Interaction) -> int:
        """Acknowledge with a public "thinking…" message; return that message's id."""
        assert self._pool is not None, "Acknowledger.start() runs in the bot's setup_hook"
        self._in_flight += 1
        self._settled.clear()
        try:
            return await self._defer_thinking(interaction, self._pool)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._settled.set()

    async def settled(self) -> None:
        """Return once no deferral is waiting or in flight, or after `SETTLE_S` (a steady stream never settles)."""
        if self._in_flight:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), SETTLE_S)

    async def _defer_thinking(self, interaction: discord.Interaction, pool: OriginPool) -> int:
        # The query discord.py's own defer sends, so the watch sees its retry of this request as one.
        path = f"/interactions/{interaction.id}/{interaction.token}/callback?with_response=1"
        url = pool.url(path)
        self._watch.sent("POST", url)
        try:
            response = await pool.post(path, DEFER_THINKING, within_s=ACK_TIMEOUT_S)
        except TransportError:
            self._watch.unanswered("POST", url)
            return await _defer_by_discord_py(interaction)
        self._watch.answered("POST", url, response.status)
        if response.status == 429 or response.status >= 500:
            return await _defer_by_discord_py(interaction)
        if response.status >= 300:
            raise discord.HTTPException(
                _Answer(response.status, response.headers), _json_or_text(response.body)
            )
        interaction.response._response_type = discord.InteractionResponseType.deferred_channel_message
        return int(json.loads(response.body)["interaction"]["response_message_id"])


class _Answer:
    """What `discord.HTTPException` reads of a response: its status and reason."""

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status = status
        self.reason = ""
        self.headers = headers


async def _defer_by_discord_py(interaction: discord.Interaction) -> int:
    try:
        callback = await interaction.response.defer(thinking=True)
    except discord.HTTPException as exc:
        if exc.code != ALREADY_ACKNOWLEDGED:
            raise
        interaction.response._response_type = discord.InteractionResponseType.deferred_channel_message
    else:
        if callback is not None and callback.message_id is not None:
            return callback.message_id
    return (await interaction.original_response()).id


def _json_or_text(body: bytes) -> dict | str:
    """An error body as discord.py's HTTPException reads it: Discord's JSON error, or the text of another."""
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")
