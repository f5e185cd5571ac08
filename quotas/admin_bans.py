"""Banning a user from making requests in a tenant."""

from __future__ import annotations

from quotas.admin_tiers import TenantRef
from quotas.policy import tenant_for
from storage.models import get_or_create_user
from storage.quota_models import UserBan


class BanAdmin:
    """Bans and unbans users (admission refuses a banned user's requests)."""

    async def ban(self, tenant: TenantRef, user: str, *, reason: str = "") -> None:
        """Refuse every new request of `user` (the platform's user id) in the tenant; their jobs already queued
        still run (cancel them with `JobAdmin.cancel_job` if needed)."""
        u = await get_or_create_user(await tenant_for(tenant), user)
        await UserBan.update_or_create(defaults={"reason": reason[:200]}, user=u)

    async def unban(self, tenant: TenantRef, user: str) -> bool:
        """Lift a ban; False if the user was not banned."""
        u = await get_or_create_user(await tenant_for(tenant), user)
        return await UserBan.filter(user=u).delete() > 0
