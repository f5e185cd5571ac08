"""Operator ceilings: what a chat admin may change about their own tenant, and what only Atelier's operator may.

Atelier is invited into servers and workspaces whose admins its operator does not know (on Discord, whoever
creates a guild and invites the bot has Manage Server). Those admins run their own tenant below the operator's
ceilings; anything above them comes only from the operator: the CLI (`atelier admin …`, which runs on the
operator's machine) or a user listed in the platform's operators setting (`ATELIER_DISCORD_OPERATORS`,
`ATELIER_SLACK_OPERATORS`). A chat admin may:

- choose a self-service tier (`Tier.self_service`; built in, only `free`), and from a tier the operator assigned
  that is not self-service, only a self-service tier that gives no more (no higher weight, no higher limit), so
  an operator who holds a tenant on a tier of their own cannot be undone by picking `free`;
- set a limit no higher than the tier's value or the value in force now (so lowering, and raising back up to the
  tier's value, are theirs; an operator's grant above the tier may be kept or given up, not exceeded);
- return limits to the tier's values (`--clear`), set the timezone, pause, resume, ban and unban.

A refusal is `OperatorOnly`, a PermissionError whose message tells the chat admin who can make the change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from quotas.policy import Policy
from quotas.tiers import LIMIT_NAMES, Tier, Tiers


class OperatorOnly(PermissionError):
    """A change only Atelier's operator may make; the message, for a chat admin, says who can."""

    def __init__(self, what: str, platform: str) -> None:
        super().__init__(
            f"Only Atelier's operator (whoever runs the bot) can {what}; ask them. "
            f"(Operators: list your {platform.capitalize()} user id in {operators_setting(platform)}.)"
        )


def operators_setting(platform: str) -> str:
    """The setting that lists a platform's operator user ids, e.g. `ATELIER_DISCORD_OPERATORS`."""
    return f"ATELIER_{platform.upper()}_OPERATORS"


def check_tier(tiers: Tiers, current: Tier, wanted: str, platform: str) -> None:
    """Refuse a chat admin's move from `current` to the tier `wanted` unless the rules above allow it."""
    tier = tiers.get(wanted)
    if tier.name == current.name:
        return
    if tier.self_service and (current.self_service or tier.no_higher_than(current)):
        return
    choices = [
        name for name in tiers.self_service() if name == current.name or _may_move(current, tiers, name)
    ]
    them = f" (you can choose: {', '.join(choices)})" if choices else ""
    raise OperatorOnly(f"choose the {tier.name} tier{them}", platform)


def _may_move(current: Tier, tiers: Tiers, name: str) -> bool:
    return current.self_service or tiers.get(name).no_higher_than(current)


def check_limits(
    policy: Policy, values: Mapping[str, int], platform: str, *, cleared: Iterable[str] = ()
) -> None:
    """Refuse a chat admin's limits above both the tier's value and the value in force (the tier's, for a limit
    being cleared in the same change)."""
    cleared = set(cleared)
    for name in LIMIT_NAMES:
        if name not in values:
            continue
        tier_value = getattr(policy.tier.limits, name)
        current = tier_value if name in cleared else getattr(policy.limits, name)
        ceiling = None if tier_value is None or current is None else max(tier_value, current)
        if ceiling is not None and values[name] > ceiling:
            label = name.replace("_", "-")
            raise OperatorOnly(
                f"raise {label} above {ceiling} (the most the {policy.tier.name} tier allows here)", platform
            )
