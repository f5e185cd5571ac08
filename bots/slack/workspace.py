"""Middleware that tells every listener who is asking: the Slack workspace and user as Atelier's tenant and user.

The records are looked up on first use, not in the middleware itself, so nothing touches the database before a
listener has acknowledged its request (Slack's 3-second deadline).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from slack_bolt.context.async_context import AsyncBoltContext

from jobs.ownership import job_for
from storage.models import Job, Tenant, User, get_or_create_tenant, get_or_create_user


class Workspace:
    """The tenant and user of one request, created in the database the first time they are asked for."""

    def __init__(self, team_id: str, user_id: str | None, team_name: str = "", user_name: str = "") -> None:
        self.team_id, self.user_id = team_id, user_id
        self._team_name, self._user_name = team_name, user_name
        self._tenant: Tenant | None = None
        self._user: User | None = None

    async def tenant(self) -> Tenant:
        if self._tenant is None:
            self._tenant = await get_or_create_tenant("slack", self.team_id, self._team_name)
        return self._tenant

    async def user(self) -> User | None:
        if self.user_id is None:
            return None
        if self._user is None:
            self._user = await get_or_create_user(await self.tenant(), self.user_id, self._user_name)
        return self._user

    async def job(self, job_id: str) -> Job | None:
        """Job `job_id` if it is this workspace's; None when there is none; `jobs.ownership.ForeignJob` when it
        is another workspace's (a click or reaction from a Slack Connect channel, or a forged payload)."""
        return await job_for(job_id, "slack", self.team_id)


async def attach_workspace(
    body: dict, context: AsyncBoltContext, next: Callable[[], Awaitable[None]]
) -> None:
    """Put a `Workspace` in `context["workspace"]` for every request that comes from a workspace."""
    team_id = context.team_id or context.enterprise_id
    if team_id:
        context["workspace"] = Workspace(team_id, context.user_id, _team_name(body), _user_name(body))
    await next()


def _team_name(body: dict) -> str:
    team = body.get("team")
    if isinstance(team, dict):
        return team.get("domain") or ""
    return body.get("team_domain") or ""


def _user_name(body: dict) -> str:
    user = body.get("user")
    if isinstance(user, dict):
        return user.get("username") or user.get("name") or ""
    return body.get("user_name") or ""
