"""Abuse limits in the real Discord bot (issue 11, item 5): a banned member's reaction downloads, reads and posts
nothing; a role that only looks like the admin role (its name, or a name equal to the admin role's id) gives no
admin rights."""

from __future__ import annotations

import pytest

from jobs.queue import job_id_for
from tests.discord import payloads as p
from tests.discord.emulator import Upload
from tests.discord.helpers import job_row, noise_png
from tests.discord.stack import Stack

MANAGER = p.MEMBER_PERMISSIONS | p.MANAGE_GUILD

pytestmark = pytest.mark.usefixtures("show_logs_on_failure")


async def _answer(stack: Stack, command, text: str) -> str:
    emulator = stack.emulator
    await emulator.wait_response(command)
    if command.callback_type == 4:
        return command.callback_data["content"]
    message = emulator.messages[command.original_message_id]
    await emulator.wait_until(lambda: text in message.content, 15, f"{text!r} in the answer")
    return message.content


async def test_a_banned_members_reaction_downloads_nothing_and_posts_nothing(stack: Stack) -> None:
    emulator = stack.emulator
    bob = emulator.users["bob"]["id"]
    ban = await emulator.slash("atelier", {"user": f"<@{bob}>"}, subcommand="ban", permissions=MANAGER)
    assert f"user {bob} banned" in await _answer(stack, ban, "banned")
    try:
        posted = emulator.post("alice", "my cat", [Upload("banned-cat.png", noise_png(80, 64))])
        before = len(emulator.messages_in(posted.channel_id))
        await emulator.react(posted.id, "🔍", user="bob")
        drop = f"reaction by banned member {bob} of guild {emulator.guild_id} on message {posted.id}: dropped"
        await emulator.wait_until(
            lambda: drop in stack.logs(), 15, "the bot's log line for the dropped reaction"
        )

        assert not [name for name in emulator.cdn_requests if name.endswith("banned-cat.png")]
        assert emulator.requests_for(posted.id, "GET") == []  # the message was not even read
        assert len(emulator.messages_in(posted.channel_id)) == before  # nothing posted
        request = f"discord:reaction:{posted.channel_id}:{posted.id}:{bob}:🔍"
        assert await job_row(stack, job_id_for(request)) is None
    finally:
        unban = await emulator.slash("atelier", {"user": bob}, subcommand="unban", permissions=MANAGER)
        await _answer(stack, unban, "unbanned")


async def test_a_role_named_like_the_admin_role_gives_no_admin_rights(stack: Stack) -> None:
    emulator = stack.emulator
    bob = emulator.users["bob"]["id"]
    lookalikes = [p.mint(), p.mint()]
    names = ["Atelier admins", str(emulator.admin_role_id)]  # the admin role's name, and its id as a name
    for role_id, name in zip(lookalikes, names, strict=True):
        role = p.role(role_id, name, p.MEMBER_PERMISSIONS)
        await emulator.dispatch("GUILD_ROLE_CREATE", {"guild_id": str(emulator.guild_id), "role": role})

    refused = await emulator.slash(
        "atelier", {"user": f"<@{bob}>"}, subcommand="ban", user="alice", roles=lookalikes
    )
    text = await _answer(stack, refused, "Manage Server")
    assert "Only members with the Manage Server permission" in text and "banned" not in text

    # The real admin role, by its id, does.
    allowed = await emulator.slash(
        "atelier", {"user": f"<@{bob}>"}, subcommand="ban", user="alice", roles=[emulator.admin_role_id]
    )
    assert f"user {bob} banned" in await _answer(stack, allowed, "banned")
    unban = await emulator.slash("atelier", {"user": bob}, subcommand="unban", permissions=MANAGER)
    await _answer(stack, unban, "unbanned")
