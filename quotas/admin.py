"""The admin operations, one Python API for every front-end: the CLI, the Discord bot and the Slack app.

Each concern is a small service of its own: `TierAdmin` (policy, tier), `LimitAdmin` (limit overrides,
timezone), `PreferenceAdmin` (safety filter, reaction emoji), `UsageAdmin`, `PauseAdmin`, `BanAdmin` and
`JobAdmin` (list, cancel). `Admin` builds them all for a process (`Admin(redis, queue_name, tiers,
train_queue_name=…)`), offers each as an attribute (`admin.limits`, `admin.pauses`, …) for code that needs one,
and keeps the one-object API its callers use (`admin.set_tier(...)`, `admin.cancel_job(...)`).

A tenant is a `Tenant` or `PLATFORM:ID` text (`discord:1234`); one an admin names is created if never seen, so
its tier and limits can be set before its first request. Bad input (an unknown tier or limit, a negative or
non-integer limit, an unknown timezone) is a ValueError whose message can be shown as it is; a cancel the asker
may not make is a PermissionError, and so is a chat admin's change above the operator's ceilings
(`quotas.ceilings.OperatorOnly`). Deciding who is a chat admin, and who is an operator, is the front-end's job:
these methods trust their caller, and treat it as the operator unless told `by_operator=False`.
"""

from __future__ import annotations

from redis.asyncio import Redis

from quotas.admin_bans import BanAdmin
from quotas.admin_jobs import CancelOutcome, JobAdmin, JobSummary
from quotas.admin_limits import LimitAdmin
from quotas.admin_pause import JOB_EXPIRES_S, PauseAdmin, held_key
from quotas.admin_preferences import REACTION_ACTIONS, PreferenceAdmin
from quotas.admin_tiers import TenantRef, TierAdmin
from quotas.admin_usage import Usage, UsageAdmin, UsageReport
from quotas.tiers import Tiers

__all__ = [
    "JOB_EXPIRES_S",
    "REACTION_ACTIONS",
    "Admin",
    "CancelOutcome",
    "JobSummary",
    "TenantRef",
    "Usage",
    "UsageReport",
    "held_key",
]


class Admin:
    """Every admin service over the database and the queues (`queue_name`, and `train_queue_name` if any)."""

    def __init__(
        self,
        redis: Redis,
        queue_name: str,
        tiers: Tiers | None = None,
        *,
        train_queue_name: str | None = None,
    ) -> None:
        self.redis, self.queue_name, self.tiers = redis, queue_name, tiers or Tiers()
        # Every queue a tenant's jobs wait in: a pause holds them all, a cancel finds the job in its own.
        self.queues = [queue_name] + ([train_queue_name] if train_queue_name else [])
        self.tier_admin = TierAdmin(self.tiers)
        self.limits = LimitAdmin(self.tiers)
        self.prefs = PreferenceAdmin()
        self.usage_admin = UsageAdmin(self.tiers)
        self.pauses = PauseAdmin(redis, self.queues, self.tiers)
        self.bans = BanAdmin()
        self.job_admin = JobAdmin(redis, self.queues)
        # The one-object API, method for method.
        self.policy = self.tier_admin.policy
        self.set_tier = self.tier_admin.set_tier
        self.check_limits = self.limits.check
        self.set_limits = self.limits.set_limits
        self.clear_limits = self.limits.clear_limits
        self.set_timezone = self.limits.set_timezone
        self.preferences = self.prefs.preferences
        self.set_safety = self.prefs.set_safety
        self.set_emoji = self.prefs.set_emoji
        self.usage = self.usage_admin.usage
        self.pause = self.pauses.pause
        self.resume = self.pauses.resume
        self.ban = self.bans.ban
        self.unban = self.bans.unban
        self.jobs = self.job_admin.jobs
        self.cancel_job = self.job_admin.cancel_job
