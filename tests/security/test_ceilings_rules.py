"""The rules of `quotas.ceilings` on a configured tiers file: which tiers are self-service, which moves and limits a
chat admin may make, and the refusal's wording. (The bots and the CLI apply them: test_operator_ceilings_*.)"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from quotas.ceilings import OperatorOnly, check_limits, check_tier
from quotas.policy import Policy
from quotas.tiers import Tiers
from storage.models import Tenant

TIERS = """
[tiers.standard]
weight = 2
images_per_day = 500
self_service = true
[tiers.held]
weight = 1
images_per_day = 10
"""


@pytest.fixture
def tiers(tmp_path: Path) -> Tiers:
    path = tmp_path / "tiers.toml"
    path.write_text(TIERS)
    return Tiers.load(path)


def policy(tiers: Tiers, tier: str, **overrides: int) -> Policy:
    t = tiers.get(tier)
    tenant = Tenant(platform="slack", external_id="T1")
    return Policy(tenant, t, t.limits.merged(overrides), overrides, ZoneInfo("UTC"), False)


def test_self_service_is_free_by_default_and_what_the_file_says(tiers: Tiers, tmp_path: Path) -> None:
    assert tiers.self_service() == ["free", "standard"]
    assert Tiers().self_service() == ["free"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[tiers.x]\nself_service = "yes"\n')
    with pytest.raises(ValueError, match="self_service is true or false"):
        Tiers.load(bad)


def test_a_chat_admin_moves_between_self_service_tiers_but_not_up_or_out_of_a_held_one(tiers: Tiers) -> None:
    check_tier(tiers, tiers.get("free"), "standard", "slack")  # both self-service
    check_tier(tiers, tiers.get("priority"), "free", "slack")  # down from the operator's tier
    with pytest.raises(OperatorOnly) as refused:
        check_tier(tiers, tiers.get("free"), "priority", "slack")
    assert str(refused.value) == (
        "Only Atelier's operator (whoever runs the bot) can choose the priority tier (you can choose: free, "
        "standard); ask them. (Operators: list your Slack user id in ATELIER_SLACK_OPERATORS.)"
    )
    # The operator holds this tenant on a tier of their own: picking free would raise its limits.
    with pytest.raises(OperatorOnly, match="choose the free tier"):
        check_tier(tiers, tiers.get("held"), "free", "slack")


def test_a_chat_admin_lowers_limits_and_raises_them_only_back_to_the_tiers(tiers: Tiers) -> None:
    check_limits(policy(tiers, "free", images_per_day=5), {"images_per_day": 100}, "discord")
    check_limits(
        policy(tiers, "free", images_per_day=900), {"images_per_day": 800}, "discord"
    )  # a grant kept
    with pytest.raises(OperatorOnly, match=r"raise images-per-day above 100 .*ATELIER_DISCORD_OPERATORS"):
        check_limits(policy(tiers, "free"), {"images_per_day": 101}, "discord")
    with pytest.raises(OperatorOnly, match="above 100"):  # a grant being cleared is no ceiling
        check_limits(
            policy(tiers, "free", images_per_day=900),
            {"images_per_day": 800},
            "discord",
            cleared=["images_per_day"],
        )
    check_limits(
        policy(tiers, "priority"), {"images_per_user_per_day": 10**9}, "discord"
    )  # no limit in the tier
