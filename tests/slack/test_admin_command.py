"""`/atelier …` admin commands: only workspace admins and owners (from `users.info`) or configured admins may
use them, on their own workspace; what they set is what the quotas admin API (`Admin.policy`) then reports."""

from __future__ import annotations

import asyncio
import sys

import asyncpg

from tests.slack.emulator import SlackEmulator
from tests.slack.slack_requests import post_signed_form, slash_command

TEAM = "TADMIN"


async def policy(slack_env: dict[str, str], tenant: str) -> str:
    """`Admin.policy(tenant).describe()`, through the CLI (`atelier admin tier TENANT` prints exactly that)."""
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "atelier", "admin", "tier", tenant),
        env=slack_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(cli.communicate(), 120)
    assert cli.returncode == 0, stderr.decode()
    return stdout.decode()


async def atelier(http_bot: str, emulator: SlackEmulator, text: str, *, user: str, name: str) -> str:
    """Type `/atelier <text>` as `user` in TADMIN; return the ephemeral answer."""
    fields = slash_command(
        text, channel="CADMIN", team=TEAM, user=user, response_url=emulator.response_url(name)
    )
    fields["command"] = "/atelier"
    answer = await post_signed_form(http_bot, fields)
    assert answer.status == 200 and answer.seconds < 3
    reply = (await emulator.wait_for(lambda: emulator.responses(name), what=f"the answer to {text}"))[0]
    assert reply.args["response_type"] == "ephemeral", reply.args
    return reply.args["text"]


async def test_a_non_admin_is_refused_and_an_admins_quota_takes_effect(
    http_bot: str, slack_emulator: SlackEmulator, slack_env: dict[str, str], db: asyncpg.Connection
) -> None:
    refused = await atelier(
        http_bot, slack_emulator, "quota --images-per-day 5", user="U1", name="admin-refused"
    )
    assert "Only this workspace's admins and owners" in refused
    assert "images-per-day: 5 (override)" not in await policy(slack_env, f"slack:{TEAM}")

    # UADMIN is a workspace admin by users.info; the answer is the policy as it now stands.
    done = await atelier(
        http_bot,
        slack_emulator,
        "quota --images-per-day 5 --clear concurrent-jobs",
        user="UADMIN",
        name="admin-quota",
    )
    assert f"slack:{TEAM}" in done and "images-per-day: 5 (override)" in done
    assert "images-per-day: 5 (override)" in await policy(slack_env, f"slack:{TEAM}")
    assert slack_emulator.api_calls("users.info", user="UADMIN")

    # A mistake is explained with the usage; nothing changes.
    wrong = await atelier(
        http_bot, slack_emulator, "quota --images-per-day many", user="UADMIN", name="admin-wrong"
    )
    assert "images_per_day" in wrong or "images-per-day" in wrong
    unknown = await atelier(http_bot, slack_emulator, "fly away", user="UADMIN", name="admin-unknown")
    assert "invalid choice: 'fly'" in unknown and "usage: /atelier" in unknown


async def test_a_configured_admin_bans_a_member_by_mention_and_their_requests_are_refused(
    http_bot: str, slack_emulator: SlackEmulator, db: asyncpg.Connection
) -> None:
    banned = await atelier(
        http_bot, slack_emulator, "ban <@U7|u7> --reason spam", user="UCONFIGADMIN", name="admin-ban"
    )
    assert f"slack:{TEAM}: user U7 banned" in banned
    jobs_before = await db.fetchval("SELECT count(*) FROM jobs")
    fields = slash_command(
        "a fox --steps 3",
        channel="CADMINBAN",
        team=TEAM,
        user="U7",
        response_url=slack_emulator.response_url("banned-imagine"),
    )
    assert (await post_signed_form(http_bot, fields)).status == 200
    reply = (await slack_emulator.wait_for(lambda: slack_emulator.responses("banned-imagine")))[0]
    assert reply.args["response_type"] == "ephemeral" and "an admin has blocked it" in reply.args["text"]
    assert await db.fetchval("SELECT count(*) FROM jobs") == jobs_before
    unbanned = await atelier(http_bot, slack_emulator, "unban U7", user="UCONFIGADMIN", name="admin-unban")
    assert "user U7 unbanned" in unbanned
