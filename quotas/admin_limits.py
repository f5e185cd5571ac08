"""A tenant's limit overrides and timezone, for admins. A chat admin's values stay under the operator's ceilings
(`quotas.ceilings.check_limits`); the CLI and the operators set any."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from quotas.admin_tiers import TenantRef
from quotas.ceilings import check_limits
from quotas.periods import zone
from quotas.policy import Policy, policy_from_row, quota_row, tenant_for
from quotas.tiers import LIMIT_NAMES, Tiers, parse_limit


class LimitAdmin:
    """Overrides, clears and checks tenants' limits, and sets the timezone their periods reset in."""

    def __init__(self, tiers: Tiers) -> None:
        self.tiers = tiers

    async def check(
        self, tenant: TenantRef, limits: Mapping[str, int], *, cleared: Iterable[str] = ()
    ) -> None:
        """Refuse (`OperatorOnly`) a chat admin's `limits`, set after clearing `cleared`, above the ceilings;
        a front-end calls it before changing anything, so that a refused change changes nothing."""
        t = await tenant_for(tenant)
        check_limits(
            policy_from_row(t, await quota_row(t, self.tiers), self.tiers),
            limits,
            t.platform,
            cleared=cleared,
        )

    async def set_limits(self, tenant: TenantRef, *, by_operator: bool = True, **limits: int | str) -> Policy:
        """Override some of the tenant's limits, e.g. `set_limits("discord:1", images_per_day=3)`. Each value is
        a whole number ≥ 0 (an int or its text); 0 allows nothing. All are checked before any is saved; a chat
        admin's (`by_operator=False`) also against the ceilings."""
        if not limits:
            raise ValueError(f"name at least one limit to set: {', '.join(LIMIT_NAMES)}")
        values = {name: parse_limit(name, value) for name, value in limits.items()}
        t = await tenant_for(tenant)
        row = await quota_row(t, self.tiers)
        if not by_operator:
            check_limits(policy_from_row(t, row, self.tiers), values, t.platform)
        for name, value in values.items():
            setattr(row, name, value)
        await row.save(update_fields=[*values, "updated_at"])
        return policy_from_row(t, row, self.tiers)

    async def clear_limits(self, tenant: TenantRef, *names: str) -> Policy:
        """Return the named limits (all of them when none is named) to the tier's defaults."""
        for name in names:
            if name not in LIMIT_NAMES:
                raise ValueError(f"unknown limit {name!r}: choose one of {', '.join(LIMIT_NAMES)}")
        t = await tenant_for(tenant)
        row = await quota_row(t, self.tiers)
        cleared = names or LIMIT_NAMES
        for name in cleared:
            setattr(row, name, None)
        await row.save(update_fields=[*cleared, "updated_at"])
        return policy_from_row(t, row, self.tiers)

    async def set_timezone(self, tenant: TenantRef, timezone: str) -> Policy:
        """Reset daily and monthly limits at midnight in `timezone` (an IANA name such as `Europe/Paris`)."""
        zone(timezone)
        t = await tenant_for(tenant)
        row = await quota_row(t, self.tiers)
        row.timezone = timezone
        await row.save(update_fields=["timezone", "updated_at"])
        return policy_from_row(t, row, self.tiers)
