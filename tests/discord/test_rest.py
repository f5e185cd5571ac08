"""The workers' REST client against the emulator: 429s waited out, dead tokens never retried."""

from __future__ import annotations

import pytest

from bots.discord.rest import DiscordRest, RateLimited, TokenExpired
from tests.discord.emulator import DiscordEmulator
from tests.discord.stack import Stack


@pytest.fixture
async def rest(emulator: DiscordEmulator):
    client = DiscordRest(emulator.bot_token, emulator.api_base)
    yield client
    await client.close()


async def _message(rest: DiscordRest, emulator: DiscordEmulator) -> int:
    created = await rest.request(
        "POST", f"/channels/{emulator.channel_id}/messages", payload={"content": "hi"}
    )
    return int(created["id"])


async def test_a_429_is_waited_out_for_its_retry_after_and_retried(
    rest: DiscordRest, emulator: DiscordEmulator
) -> None:
    message_id = await _message(rest, emulator)
    rule = emulator.rate_limit("PATCH", rf"/messages/{message_id}$", every=1, retry_after=0.3)
    path = f"/channels/{emulator.channel_id}/messages/{message_id}"
    try:
        with pytest.raises(RateLimited) as refused:
            await rest.request("PATCH", path, payload={"content": "frame"}, retry_rate_limits=False)
        assert refused.value.retry_after == 0.3 and rule.served == 1
        rule.every = 2  # the next one is refused, the one after is not
        await rest.request("PATCH", path, payload={"content": "final"})
    finally:
        emulator.rate_limits.remove(rule)
    attempts = emulator.requests_for(message_id, "PATCH")
    assert [r.status for r in attempts] == [429, 429, 200]
    assert attempts[2].at - attempts[1].at >= 0.3
    assert emulator.messages[message_id].content == "final"


async def test_an_expired_interaction_token_raises_at_once(rest: DiscordRest, stack: Stack) -> None:
    emulator = stack.emulator  # the bot answers the command, so its token is a real one
    interaction = await emulator.slash("imagine", {"prompt": "--bogus"})
    await emulator.wait_response(interaction)
    emulator.expire_token(interaction.token)
    before = len(emulator.requests)
    with pytest.raises(TokenExpired):
        path = f"/webhooks/{emulator.app_id}/{interaction.token}/messages/@original"
        await rest.request("PATCH", path, payload={"content": "late"}, bot_auth=False)
    assert len(emulator.requests) == before + 1  # one try, no retries
