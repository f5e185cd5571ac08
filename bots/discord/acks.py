"""The deferral ("thinking…"), sent on a lean path of its own: the one response Discord times (3 s).

Under a burst the bot's time per interaction is what decides how late the last one is acknowledged, and
discord.py's `InteractionResponse.defer` builds a route, a per-webhook lock and a JSON body for every call. Here
the body is one constant, the request goes straight to aiohttp, and it has a connection pool of its own
(`ACK_CONNECTIONS`), so an acknowledgement never waits behind the bot's other REST calls (status edits, threads,
follow-ups). Once it is sent, discord.py is told (its `InteractionResponse` records the response type), so every
later call on the interaction (follow-ups, `edit_original_response`, `is_done()`) behaves as after its own defer.

A failure that discord.py would retry (a 5xx, a 429, a dropped connection) is handed to discord.py's `defer`,
which retries it; if the first attempt had reached Discord after all, the retry is told "already acknowledged"
(40060) and the message is looked up instead. `bench/ack_burst.py` measures the difference.
"""

from __future__ import annotations

import json

import aiohttp
import discord

from bots.discord.rest import USER_AGENT

ACK_CONNECTIONS = 16
DEFER_THINKING = b'{"type":5}'  # DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE: a public "thinking…" message
ALREADY_ACKNOWLEDGED = 40060


class Acknowledger:
    def __init__(self, trace: aiohttp.TraceConfig) -> None:
        self._trace = trace
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=ACK_CONNECTIONS),
            headers={"User-Agent": USER_AGENT, "Content-Type": "application/json"},
            trace_configs=[self._trace],
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def defer_thinking(self, interaction: discord.Interaction) -> int:
        """Acknowledge with a public "thinking…" message; return that message's id."""
        assert self._session is not None, "Acknowledger.start() runs in the bot's setup_hook"
        url = f"{discord.http.Route.BASE}/interactions/{interaction.id}/{interaction.token}/callback"
        try:
            async with self._session.post(
                url, params={"with_response": "true"}, data=DEFER_THINKING
            ) as response:
                body = await response.read()
        except aiohttp.ClientError:
            return await _defer_by_discord_py(interaction)
        if response.status == 429 or response.status >= 500:
            return await _defer_by_discord_py(interaction)
        if response.status >= 300:
            raise discord.HTTPException(response, _json_or_text(body))
        interaction.response._response_type = discord.InteractionResponseType.deferred_channel_message
        return int(json.loads(body)["interaction"]["response_message_id"])


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
