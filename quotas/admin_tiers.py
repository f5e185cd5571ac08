"""A tenant's policy and tier, for admins: `TierAdmin.policy` shows it, `set_tier` moves it (a chat admin only
within `quotas.ceilings`)."""

from __future__ import annotations

from quotas.ceilings import check_tier
from quotas.policy import Policy, policy_from_row, quota_row, tenant_for
from quotas.tiers import Tiers
from storage.models import Tenant

TenantRef = Tenant | str
"""A tenant as a `Tenant` or as `PLATFORM:ID` text (`discord:1234`); one never seen is created."""


class TierAdmin:
    """Reads and sets tenants' tiers under the configured `tiers`."""

    def __init__(self, tiers: Tiers) -> None:
        self.tiers = tiers

    async def policy(self, tenant: TenantRef) -> Policy:
        """The tenant's effective policy (tier, limits with their source, timezone, paused)."""
        t = await tenant_for(tenant)
        return policy_from_row(t, await quota_row(t, self.tiers), self.tiers)

    async def set_tier(self, tenant: TenantRef, tier: str, *, by_operator: bool = True) -> Policy:
        """Put the tenant on `tier` (its limit overrides stay); an unknown tier is a ValueError listing them.
        A chat admin (`by_operator=False`) may choose only what `quotas.ceilings.check_tier` allows, else
        `OperatorOnly`."""
        self.tiers.get(tier)
        t = await tenant_for(tenant)
        row = await quota_row(t, self.tiers)
        if not by_operator:
            check_tier(self.tiers, policy_from_row(t, row, self.tiers).tier, tier, t.platform)
        row.tier = tier
        await row.save(update_fields=["tier", "updated_at"])
        return policy_from_row(t, row, self.tiers)
