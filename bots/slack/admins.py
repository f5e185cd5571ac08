"""Who may act on other people's jobs (and, later, run `/atelier` admin commands): the configured admin list,
or the workspace's admins and owners as `users.info` reports them."""

from __future__ import annotations

from collections.abc import Collection

from slack_sdk.web.async_client import AsyncWebClient


async def is_admin(client: AsyncWebClient, admins: Collection[str], user_id: str) -> bool:
    """True for a configured admin (no API call) or a workspace admin or owner."""
    if user_id in admins:
        return True
    info = await client.users_info(user=user_id)
    user = info.get("user") or {}
    return bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))
