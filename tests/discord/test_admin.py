"""`/atelier`: the admin actions are refused to ordinary members and take effect for admins; `/atelier queue`."""

from __future__ import annotations

import asyncio

import pytest

from bots.discord.components import cancel_id
from tests.discord import payloads as p
from tests.discord.emulator import DiscordEmulator, Interaction
from tests.discord.helpers import job_id_of, wait_status
from tests.discord.stack import Stack, run_cli

MANAGER = p.MEMBER_PERMISSIONS | p.MANAGE_GUILD

pytestmark = pytest.mark.usefixtures("show_logs_on_failure")


async def answer(emulator: DiscordEmulator, command: Interaction, text: str) -> str:
    """The ephemeral answer of an `/atelier` command (its response, or the deferred message's edit)."""
    await emulator.wait_response(command)
    assert command.callback_data.get("flags", 0) & 64, "every /atelier answer is ephemeral"
    if command.callback_type == 4:
        return command.callback_data["content"]
    message = emulator.messages[command.original_message_id]
    await emulator.wait_until(lambda: text in message.content, 15, f"{text!r} in the answer")
    return message.content


async def test_a_members_quota_is_refused_and_an_admins_takes_effect(stack: Stack) -> None:
    emulator = stack.emulator
    tenant = f"discord:{emulator.guild_id}"

    refused = await emulator.slash("atelier", {"images_per_day": 3}, subcommand="quota", user="bob")
    text = await answer(emulator, refused, "Manage Server")
    assert refused.callback_type == 4 and "Only members with the Manage Server permission" in text
    await asyncio.sleep(0.3)
    assert "images-per-day: 3 (override)" not in await run_cli(stack.env, "admin", "tier", tenant)

    try:
        by_role = await emulator.slash(
            "atelier",
            {"images_per_day": 3, "timezone": "Europe/Paris"},
            subcommand="quota",
            user="carol",
            roles=[emulator.admin_role_id],
        )
        text = await answer(emulator, by_role, "images-per-day: 3 (override)")
        assert "timezone Europe/Paris" in text
        policy = await run_cli(stack.env, "admin", "tier", tenant)
        assert "images-per-day: 3 (override)" in policy and "timezone Europe/Paris" in policy

        # Manage Server alone is enough too; a typo is answered with what to fix, and changes nothing.
        typo = await emulator.slash(
            "atelier", {"clear": "images-per-week"}, subcommand="quota", permissions=MANAGER
        )
        assert "unknown limit 'images-per-week'" in await answer(emulator, typo, "unknown limit")
        assert "images-per-day: 3 (override)" in await run_cli(stack.env, "admin", "tier", tenant)
    finally:
        cleared = await emulator.slash("atelier", {"clear": "all"}, subcommand="quota", permissions=MANAGER)
        await answer(emulator, cleared, "images-per-day")
    assert "images-per-day: 3 (override)" not in await run_cli(stack.env, "admin", "tier", tenant)


async def test_ban_is_for_admins_and_queue_shows_the_callers_jobs(stack: Stack) -> None:
    emulator = stack.emulator
    bob = emulator.users["bob"]["id"]
    refused = await emulator.slash("atelier", {"user": f"<@{bob}>"}, subcommand="ban", user="alice")
    assert "Only members" in await answer(emulator, refused, "Only members")
    banned = await emulator.slash(
        "atelier", {"user": f"<@{bob}>", "reason": "spam"}, subcommand="ban", permissions=MANAGER
    )
    assert f"user {bob} banned" in await answer(emulator, banned, "banned")
    unbanned = await emulator.slash("atelier", {"user": bob}, subcommand="unban", permissions=MANAGER)
    assert f"user {bob} unbanned" in await answer(emulator, unbanned, "unbanned")

    await stack.idle_queue()
    empty = await emulator.slash("atelier", {}, subcommand="queue", user="bob")
    assert "no queued or running jobs" in await answer(emulator, empty, "no queued")
    first = await emulator.slash(
        "imagine", {"prompt": "a long road --size 512x512 --hires 1 --steps 50 --count 4", "model": "tiny"}
    )
    await emulator.wait_response(first)
    await wait_status(emulator, first.original_message_id, "step", within=60)  # it runs
    second = await emulator.slash("imagine", {"prompt": "a short road --steps 2", "model": "tiny"})
    await emulator.wait_response(second)
    await emulator.wait_until(
        lambda: "Queued" in emulator.messages[second.original_message_id].content, 15, "the second job queued"
    )
    mine = await emulator.slash("atelier", {}, subcommand="queue")
    text = await answer(emulator, mine, job_id_of(second))
    line = next(line for line in text.splitlines() if job_id_of(second) in line)
    assert "position 1" in line
    if job_id_of(first) in text:  # unless it finished meanwhile
        assert "running" in next(line for line in text.splitlines() if job_id_of(first) in line)
    assert text.index(job_id_of(second)) > text.find(job_id_of(first))  # running first, then queued
    cancel = await emulator.click(first.original_message_id, cancel_id(job_id_of(first)))
    await emulator.wait_response(cancel)
    await stack.idle_queue()
