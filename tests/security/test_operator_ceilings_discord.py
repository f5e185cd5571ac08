"""Operator ceilings through the real Discord bot (issue 11, item 2): a server admin who is not Atelier's operator
cannot choose the priority tier or raise a limit, and is told who can; the operator (ATELIER_DISCORD_OPERATORS,
olga in the rig) and the CLI can. A server admin may still lower limits and choose a self-service tier."""

from __future__ import annotations

import pytest

from tests.discord import conftest as discord_rig
from tests.discord import payloads as p
from tests.discord.emulator import DiscordEmulator, Interaction
from tests.discord.stack import Stack, run_cli

MANAGER = p.MEMBER_PERMISSIONS | p.MANAGE_GUILD
HUGE = 1_000_000_000
ASK_OPERATOR = "Only Atelier's operator"

# The Discord rig of tests/discord/conftest.py, as fixtures of this module: a bot and worker of its own on the same
# services, started after tests/discord's have stopped (the rig is package-scoped).
emulator = discord_rig.emulator
services_env = discord_rig.services_env
stack = discord_rig.stack
show_logs_on_failure = discord_rig.show_logs_on_failure

pytestmark = pytest.mark.usefixtures("show_logs_on_failure")


async def answer(server: DiscordEmulator, command: Interaction, text: str) -> str:
    """The ephemeral answer of an `/atelier` command once it contains `text`."""
    await server.wait_response(command)
    assert command.callback_data.get("flags", 0) & 64, "every /atelier answer is ephemeral"
    if command.callback_type == 4:
        return command.callback_data["content"]
    message = server.messages[command.original_message_id]
    await server.wait_until(lambda: text in message.content, 15, f"{text!r} in the answer")
    return message.content


async def test_a_server_admin_cannot_raise_tier_or_limits_and_the_operator_can(stack: Stack) -> None:
    server = stack.emulator
    tenant = f"discord:{server.guild_id}"
    # The operator puts the server on the free tier from the terminal (the rig starts servers on priority).
    assert "tier free" in await run_cli(stack.env, "admin", "tier", tenant, "free")
    try:
        # Manage Server, as whoever created the guild and invited the bot has it.
        tier = await server.slash("atelier", {"tier": "priority"}, subcommand="tier", permissions=MANAGER)
        text = await answer(server, tier, ASK_OPERATOR)
        assert "choose the priority tier" in text and "ATELIER_DISCORD_OPERATORS" in text, text
        assert "you can choose: free" in text, text
        quota = await server.slash(
            "atelier",
            {"concurrent_jobs": HUGE, "images_per_day": HUGE},
            subcommand="quota",
            permissions=MANAGER,
        )
        text = await answer(server, quota, ASK_OPERATOR)
        assert "raise images-per-day above 100" in text and "ATELIER_DISCORD_OPERATORS" in text, text
        policy = await run_cli(stack.env, "admin", "tier", tenant)
        assert "tier free" in policy and "override" not in policy, policy  # nothing changed, not even part

        # Lowering is the server admin's own business.
        lower = await server.slash("atelier", {"images_per_day": 5}, subcommand="quota", permissions=MANAGER)
        assert "images-per-day: 5 (override)" in await answer(server, lower, "images-per-day: 5")

        # The operator, in chat (no Manage Server needed), does both.
        tier = await server.slash("atelier", {"tier": "priority"}, subcommand="tier", user="olga")
        assert "tier priority (weight 4)" in await answer(server, tier, "tier priority")
        quota = await server.slash(
            "atelier", {"concurrent_jobs": HUGE, "images_per_day": HUGE}, subcommand="quota", user="olga"
        )
        text = await answer(server, quota, f"concurrent-jobs: {HUGE}")
        assert f"concurrent-jobs: {HUGE} (override)" in text and f"images-per-day: {HUGE} (override)" in text

        # Back from the operator's priority tier, a server admin may pick free (it gives no more) and not return.
        down = await server.slash("atelier", {"tier": "free"}, subcommand="tier", permissions=MANAGER)
        assert "tier free (weight 1)" in await answer(server, down, "tier free")
        again = await server.slash("atelier", {"tier": "priority"}, subcommand="tier", permissions=MANAGER)
        assert ASK_OPERATOR in await answer(server, again, ASK_OPERATOR)
    finally:
        await run_cli(stack.env, "admin", "quota", tenant, "--clear", "all")
        await run_cli(stack.env, "admin", "tier", tenant, "priority")
    assert "tier priority" in await run_cli(stack.env, "admin", "tier", tenant)


async def test_the_cli_is_the_operator(stack: Stack) -> None:
    tenant = f"discord:{stack.emulator.other_guild_id}"
    try:
        raised = await run_cli(stack.env, "admin", "quota", tenant, "--concurrent-jobs", str(HUGE))
        assert f"concurrent-jobs: {HUGE} (override)" in raised
        assert "tier standard" in await run_cli(stack.env, "admin", "tier", tenant, "standard")
    finally:
        await run_cli(stack.env, "admin", "quota", tenant, "--clear", "all")
        await run_cli(stack.env, "admin", "tier", tenant, "priority")
