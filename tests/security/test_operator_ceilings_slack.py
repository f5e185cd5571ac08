"""Operator ceilings through the real Slack app (issue 11, item 2): a workspace admin who is not Atelier's
operator cannot choose the priority tier or raise a limit, and is told who can; an operator
(ATELIER_SLACK_OPERATORS, UOPERATOR in the rig) can. Uses the shared Slack rig (tests.slack.rig)."""

from __future__ import annotations

import asyncpg

from tests.slack.emulator import SlackEmulator
from tests.slack.test_admin_command import atelier, policy

TEAM = "TADMIN"  # the team `atelier()` types in
HUGE = 1_000_000_000
ASK_OPERATOR = "Only Atelier's operator"


async def test_a_workspace_admin_cannot_raise_tier_or_limits_and_an_operator_can(
    http_bot: str, slack_emulator: SlackEmulator, slack_env: dict[str, str], db: asyncpg.Connection
) -> None:
    tenant = f"slack:{TEAM}"
    tier = await atelier(http_bot, slack_emulator, "tier priority", user="UADMIN", name="ceiling-tier")
    assert ASK_OPERATOR in tier and "choose the priority tier" in tier, tier
    assert "ATELIER_SLACK_OPERATORS" in tier and "you can choose: free" in tier, tier
    quota = await atelier(
        http_bot,
        slack_emulator,
        f"quota --concurrent-jobs {HUGE} --images-per-day {HUGE}",
        user="UADMIN",
        name="ceiling-quota",
    )
    assert ASK_OPERATOR in quota and "raise images-per-day above" in quota, quota
    # A configured admin (ATELIER_SLACK_ADMINS) is a chat admin too, not an operator.
    configured = await atelier(
        http_bot, slack_emulator, "quota --concurrent-jobs 11", user="UCONFIGADMIN", name="ceiling-configured"
    )
    assert ASK_OPERATOR in configured and "raise concurrent-jobs above 10" in configured, configured
    before = await policy(slack_env, tenant)
    assert "tier free" in before and f"{HUGE}" not in before and "concurrent-jobs: 11" not in before

    try:
        tier = await atelier(
            http_bot, slack_emulator, "tier priority", user="UOPERATOR", name="operator-tier"
        )
        assert "tier priority (weight 4)" in tier, tier
        quota = await atelier(
            http_bot,
            slack_emulator,
            f"quota --concurrent-jobs {HUGE} --images-per-day {HUGE}",
            user="UOPERATOR",
            name="operator-quota",
        )
        assert (
            f"concurrent-jobs: {HUGE} (override)" in quota and f"images-per-day: {HUGE} (override)" in quota
        )
        after = await policy(slack_env, tenant)
        assert "tier priority" in after and f"concurrent-jobs: {HUGE} (override)" in after
    finally:
        await atelier(http_bot, slack_emulator, "quota --clear all", user="UOPERATOR", name="operator-clear")
        await atelier(http_bot, slack_emulator, "tier free", user="UOPERATOR", name="operator-free")
