"""A tenant's quota policy: its tier, that tier's limits with the tenant's overrides, its timezone and pause switch.

A tenant gets its policy row the first time it is seen (by a request or by an admin setting its tier or limits
ahead of its first request), on the tier `Tiers.for_new_tenant` picks for its platform.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from quotas.periods import zone
from quotas.tiers import LIMIT_NAMES, Limits, Tier, Tiers
from storage.models import PLATFORMS, Tenant, get_or_create_tenant
from storage.quota_models import TenantQuota

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    """What admission applies to one tenant: `limits` are the effective ones (tier defaults + `overrides`)."""

    tenant: Tenant
    tier: Tier
    limits: Limits
    overrides: dict[str, int]
    timezone: ZoneInfo
    paused: bool

    def describe(self) -> str:
        """One line per setting, for an admin's screen."""
        lines = [
            f"{self.tenant}: tier {self.tier.name} (weight {self.tier.weight:g}), timezone {self.timezone}",
            f"  relax lane past the fast budget: {'yes' if self.tier.relax else 'no'}",
        ]
        if self.paused:
            lines.append("  requests are PAUSED")
        for name in LIMIT_NAMES:
            value = getattr(self.limits, name)
            source = "override" if name in self.overrides else f"{self.tier.name} default"
            lines.append(f"  {name.replace('_', '-')}: {'no limit' if value is None else value} ({source})")
        return "\n".join(lines)


def parse_tenant_ref(text: str) -> tuple[str, str]:
    """`"discord:1234"` → `("discord", "1234")`; anything else is a ValueError showing the expected form."""
    platform, sep, external_id = text.partition(":")
    if not sep or not external_id or platform not in PLATFORMS:
        raise ValueError(
            f"a tenant looks like PLATFORM:ID with PLATFORM one of {', '.join(PLATFORMS)}, e.g. discord:1234"
            f" (got {text!r})"
        )
    return platform, external_id


async def tenant_for(ref: Tenant | str) -> Tenant:
    """The tenant a reference names (a Tenant, or `PLATFORM:ID` text), created if never seen before."""
    if isinstance(ref, Tenant):
        return ref
    return await get_or_create_tenant(*parse_tenant_ref(ref))


async def quota_row(tenant: Tenant, tiers: Tiers) -> TenantQuota:
    """The tenant's policy row, created on its platform's starting tier the first time."""
    row, _ = await TenantQuota.get_or_create(
        defaults={"tier": tiers.for_new_tenant(tenant.platform)}, tenant=tenant
    )
    return row


async def policy_for(tenant: Tenant, tiers: Tiers) -> Policy:
    """The effective policy of `tenant` under `tiers`."""
    return policy_from_row(tenant, await quota_row(tenant, tiers), tiers)


def policy_from_row(tenant: Tenant, row: TenantQuota, tiers: Tiers) -> Policy:
    try:
        tier = tiers.get(row.tier)
    except ValueError:
        # The tier was removed from the configuration since it was set: fall back rather than lock the tenant out.
        fallback = tiers.for_new_tenant(tenant.platform)
        log.warning("tenant %s has tier %r, which is no longer defined: using %r", tenant, row.tier, fallback)
        tier = tiers.get(fallback)
    overrides = {n: getattr(row, n) for n in LIMIT_NAMES if getattr(row, n) is not None}
    return Policy(tenant, tier, tier.limits.merged(overrides), overrides, zone(row.timezone), row.paused)
