"""The admin operations, one Python API for every front-end: the CLI, the Discord bot and the Slack app.

Build one `Admin` per process (`Admin(redis, queue_name, tiers)`) and call its methods with a tenant given as a
`Tenant` or as `PLATFORM:ID` text (`discord:1234`). A tenant an admin names is created if it has never been seen,
so its tier and limits can be set before its first request. Bad input (an unknown tier or limit, a negative or
non-integer limit, an unknown timezone) is a ValueError whose message can be shown as it is; a cancel that the
asker may not make is a PermissionError. Deciding who is an admin is the front-end's job (Discord: Manage Server
or the admin role; Slack: the configured admins): these methods trust their caller.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from arq.constants import job_key_prefix
from redis.asyncio import Redis

from quotas.cancel import request_cancel
from quotas.fairness import virtual_time
from quotas.ledger import IN_FLIGHT, TENANT_SCOPE, refund
from quotas.periods import day_key, month_key, utcnow, zone
from quotas.policy import Policy, policy_from_row, quota_row, tenant_for
from quotas.tiers import LIMIT_NAMES, Tiers, parse_limit
from storage.models import Job, JobStatus, Tenant, User, get_or_create_user
from storage.preferences import MAX_EMOJI_CHARS, Preferences, preferences_of, update_preferences
from storage.quota_models import QuotaCounter, QuotaLedger, UserBan

TenantRef = Tenant | str
REACTION_ACTIONS = ("upscale", "faces")  # what a configurable reaction can start

# Moves a tenant's queued job out of the queue into its held set, keeping its score (its fair place).
_HOLD = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
redis.call('ZADD', KEYS[2], score, ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('PERSIST', KEYS[3])
return 1
"""
# Puts every held job back in the queue with the score it had, its arq record given a fresh expiry (ARGV[2] ms;
# held, it never expires: a pause may last any time). ARGV[1] is arq's job key prefix.
_RELEASE = """
local held = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 1, #held, 2 do
  redis.call('ZADD', KEYS[1], held[i + 1], held[i])
  redis.call('PEXPIRE', ARGV[1] .. held[i], ARGV[2])
end
redis.call('DEL', KEYS[2])
return #held / 2
"""


JOB_EXPIRES_S = 24 * 3600
"""How long a queued job may wait before arq drops it (jobs.queue passes it to arq when enqueueing; a held job
gets it afresh when released)."""


def held_key(queue_name: str, tenant_id: int) -> str:
    """Where a paused tenant's queued jobs wait, with their scores, until it is resumed."""
    return f"atelier:held:{queue_name}:{tenant_id}"


@dataclass(frozen=True)
class Usage:
    images: int
    gpu_seconds: float


@dataclass(frozen=True)
class UsageReport:
    """What a tenant used in one period (a day `2025-05-03` or month `2025-05`, in its timezone), net of refunds,
    including jobs still running (charged their estimate until they settle)."""

    tenant: str
    period: str
    total: Usage
    by_user: dict[str, Usage]
    by_model: dict[str, Usage]
    unfinished_jobs: int

    def describe(self) -> str:
        lines = [
            f"{self.tenant}, {self.period}: {self.total.images} images, {self.total.gpu_seconds:.1f} GPU s"
            f" ({self.unfinished_jobs} jobs unfinished)"
        ]
        for title, rows in (("by user", self.by_user), ("by model", self.by_model)):
            if rows:
                lines.append(f"  {title}:")
                for key, u in sorted(rows.items(), key=lambda kv: -kv[1].images):
                    lines.append(f"    {key}: {u.images} images, {u.gpu_seconds:.1f} GPU s")
        return "\n".join(lines)


@dataclass(frozen=True)
class JobSummary:
    id: str
    kind: str
    model: str
    status: str
    user: str | None
    created_at: datetime
    error: str | None = None

    def describe(self) -> str:
        who = f"user {self.user}" if self.user else "no user"
        return f"{self.id}  {self.status:<9}  {self.kind} {self.model}  {who}  {self.created_at:%Y-%m-%d %H:%M:%S}"


@dataclass(frozen=True)
class CancelOutcome:
    """`outcome` is `cancelled` (it was queued: it will never run, and was refunded), `stopping` (it is running:
    it stops after its current step and is then refunded) or `finished` (too late: it had already ended)."""

    job_id: str
    outcome: str
    status: str
    message: str = field(default="")


class Admin:
    """Admin operations on tenants, users and jobs, over the database and the queue `queue_name` on `redis`."""

    def __init__(
        self,
        redis: Redis,
        queue_name: str,
        tiers: Tiers | None = None,
        *,
        train_queue_name: str | None = None,
    ) -> None:
        self.redis, self.queue_name, self.tiers = redis, queue_name, tiers or Tiers()
        # Every queue a tenant's jobs wait in: a pause holds them all.
        self.queues = [queue_name] + ([train_queue_name] if train_queue_name else [])

    # Policy -------------------------------------------------------------------------------------------------

    async def policy(self, tenant: TenantRef) -> Policy:
        """The tenant's effective policy (tier, limits with their source, timezone, paused)."""
        t = await tenant_for(tenant)
        return policy_from_row(t, await quota_row(t, self.tiers), self.tiers)

    async def set_tier(self, tenant: TenantRef, tier: str) -> Policy:
        """Put the tenant on `tier` (its limit overrides stay); an unknown tier is a ValueError listing them."""
        self.tiers.get(tier)
        t = await tenant_for(tenant)
        row = await quota_row(t, self.tiers)
        row.tier = tier
        await row.save(update_fields=["tier", "updated_at"])
        return policy_from_row(t, row, self.tiers)

    async def set_limits(self, tenant: TenantRef, **limits: int | str) -> Policy:
        """Override some of the tenant's limits, e.g. `set_limits("discord:1", images_per_day=3)`. Each value is
        a whole number ≥ 0 (an int or its text); 0 allows nothing. All are checked before any is saved."""
        if not limits:
            raise ValueError(f"name at least one limit to set: {', '.join(LIMIT_NAMES)}")
        values = {name: parse_limit(name, value) for name, value in limits.items()}
        t = await tenant_for(tenant)
        row = await quota_row(t, self.tiers)
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

    # Preferences --------------------------------------------------------------------------------------------

    async def preferences(self, tenant: TenantRef) -> Preferences:
        """The tenant's safety setting and reaction emoji (storage.preferences; defaults until changed)."""
        return await preferences_of(await tenant_for(tenant))

    async def set_safety(self, tenant: TenantRef, on: bool) -> Preferences:
        """On: flagged images only in age-restricted places, as spoilers; off: posted like the others."""
        return await update_preferences(await tenant_for(tenant), safety=on)

    async def set_emoji(self, tenant: TenantRef, action: str, emoji: str) -> Preferences:
        """The reaction that starts `action` (`upscale` or `faces`) on an image; "" for the front-end's default."""
        if action not in REACTION_ACTIONS:
            raise ValueError(
                f"unknown reaction action {action!r}: choose one of {', '.join(REACTION_ACTIONS)}"
            )
        emoji = emoji.strip()
        if len(emoji) > 2 and emoji[0] == emoji[-1] == ":":  # a Slack reaction typed as :mag:
            emoji = emoji[1:-1]
        if len(emoji) > MAX_EMOJI_CHARS or any(c.isspace() for c in emoji):
            raise ValueError(
                f"{emoji!r} is not an emoji: give one emoji (or a Slack reaction name), no spaces"
            )
        current = await self.preferences(tenant)
        other = current.faces_emoji if action == "upscale" else current.upscale_emoji
        if emoji and emoji == other:
            raise ValueError(f"{emoji} already starts the other action: choose another emoji")
        return await update_preferences(await tenant_for(tenant), **{f"{action}_emoji": emoji})

    # Usage --------------------------------------------------------------------------------------------------

    async def usage(self, tenant: TenantRef, period: str = "today") -> UsageReport:
        """Usage per user and per model in `period`: `today`, `month`, a day `YYYY-MM-DD` or a month `YYYY-MM`,
        in the tenant's timezone."""
        t = await tenant_for(tenant)
        policy = policy_from_row(t, await quota_row(t, self.tiers), self.tiers)
        now = utcnow()
        key = {"today": day_key(now, policy.timezone), "month": month_key(now, policy.timezone)}.get(
            period, period
        )
        if len(key) == 10 and key[4] == "-" and key[7] == "-":
            entries = QuotaLedger.filter(tenant_id=t.id, day=key)
        elif len(key) == 7 and key[4] == "-":
            entries = QuotaLedger.filter(tenant_id=t.id, month=key)
        else:
            raise ValueError(f"period must be today, month, YYYY-MM-DD or YYYY-MM (got {period!r})")
        rows = await entries.values("user_id", "model", "images", "gpu_ms")
        users = dict(
            await User.filter(id__in={r["user_id"] for r in rows if r["user_id"]}).values_list(
                "id", "external_id"
            )
        )
        by_user: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        by_model: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        total = [0, 0]
        for r in rows:
            for bucket in (by_user[users.get(r["user_id"], "-")], by_model[r["model"] or "-"], total):
                bucket[0] += r["images"]
                bucket[1] += r["gpu_ms"]
        unfinished = await QuotaCounter.get_or_none(
            tenant_id=t.id, scope=TENANT_SCOPE, metric=IN_FLIGHT, period=""
        )
        return UsageReport(
            tenant=str(t),
            period=key,
            total=_usage(total),
            by_user={k: _usage(v) for k, v in by_user.items()},
            by_model={k: _usage(v) for k, v in by_model.items()},
            unfinished_jobs=unfinished.used if unfinished else 0,
        )

    # Pause, ban ---------------------------------------------------------------------------------------------

    async def pause(self, tenant: TenantRef) -> int:
        """Stop the tenant's queue: new requests are refused and its queued jobs are held (keeping their place)
        until `resume`; a running job finishes. Returns how many queued jobs were held."""
        t = await tenant_for(tenant)
        row = await quota_row(t, self.tiers)
        row.paused = True
        await row.save(update_fields=["paused", "updated_at"])
        held = 0
        for job_id in await Job.filter(tenant_id=t.id, status=JobStatus.QUEUED).values_list("id", flat=True):
            for queue in self.queues:
                keys = (queue, held_key(queue, t.id), job_key_prefix + job_id)
                held += await self.redis.eval(_HOLD, 3, *keys, job_id)
        return held

    async def resume(self, tenant: TenantRef) -> int:
        """Accept the tenant's requests again and put its held jobs back in the queue where they were.
        Returns how many jobs were released."""
        t = await tenant_for(tenant)
        row = await quota_row(t, self.tiers)
        row.paused = False
        await row.save(update_fields=["paused", "updated_at"])
        released = 0
        for queue in self.queues:
            expires_ms = JOB_EXPIRES_S * 1000
            keys = (queue, held_key(queue, t.id))
            released += int(await self.redis.eval(_RELEASE, 2, *keys, job_key_prefix, expires_ms))
        return released

    async def ban(self, tenant: TenantRef, user: str, *, reason: str = "") -> None:
        """Refuse every new request of `user` (the platform's user id) in the tenant; their jobs already queued
        still run (cancel them with `cancel_job` if needed)."""
        u = await get_or_create_user(await tenant_for(tenant), user)
        await UserBan.update_or_create(defaults={"reason": reason[:200]}, user=u)

    async def unban(self, tenant: TenantRef, user: str) -> bool:
        """Lift a ban; False if the user was not banned."""
        u = await get_or_create_user(await tenant_for(tenant), user)
        return await UserBan.filter(user=u).delete() > 0

    # Jobs ---------------------------------------------------------------------------------------------------

    async def jobs(
        self, tenant: TenantRef, *, status: str | None = None, user: str | None = None, limit: int = 20
    ) -> list[JobSummary]:
        """The tenant's most recent jobs, newest first, optionally only one status or one user's."""
        t = await tenant_for(tenant)
        query = Job.filter(tenant_id=t.id)
        if status is not None:
            try:
                query = query.filter(status=JobStatus(status))
            except ValueError:
                raise ValueError(
                    f"unknown status {status!r}: choose one of {', '.join(s.value for s in JobStatus)}"
                ) from None
        if user is not None:
            query = query.filter(user__external_id=user)
        if limit < 1:
            raise ValueError(f"limit must be at least 1 (got {limit})")
        jobs = await query.order_by("-created_at").limit(limit).prefetch_related("user")
        return [
            JobSummary(
                j.id,
                j.kind,
                j.model,
                j.status.value,
                j.user.external_id if j.user else None,
                j.created_at,
                j.error,
            )
            for j in jobs
        ]

    async def cancel_job(
        self,
        job_id: str,
        *,
        by_user: User | None = None,
        as_admin: bool = False,
        tenant: TenantRef | None = None,
    ) -> CancelOutcome:
        """Cancel a job for its owner (`by_user`) or an admin (`as_admin`; with `tenant`, only that tenant's jobs).

        A queued job is marked cancelled and refunded at once and will never run (it moves to the head of the
        queue so that a worker tells its platform promptly, and does nothing else). A running job is signalled:
        its worker stops it after the current step, marks it cancelled and refunds it. Raises LookupError for an
        unknown job and PermissionError for someone else's job."""
        job = await Job.get_or_none(id=job_id)
        if job is None or (tenant is not None and job.tenant_id != (await tenant_for(tenant)).id):  # type: ignore[attr-defined]
            raise LookupError(f"no job {job_id!r} here")
        if not as_admin and (by_user is None or job.user_id != by_user.id):  # type: ignore[attr-defined]
            raise PermissionError("only the person who asked for this job, or an admin, can cancel it")
        by = "an admin" if as_admin else "its owner"
        cancelled = await Job.filter(id=job_id, status=JobStatus.QUEUED).update(
            status=JobStatus.CANCELLED, finished_at=utcnow(), error=f"Cancelled by {by}."
        )
        if cancelled:
            await refund(job_id)
            await request_cancel(self.redis, job_id, by)  # in case a worker has just picked it up
            await self._to_head(job_id, job.tenant_id)  # type: ignore[attr-defined]
            return CancelOutcome(job_id, "cancelled", JobStatus.CANCELLED.value, f"Cancelled by {by}.")
        await job.refresh_from_db(fields=["status"])
        if job.status == JobStatus.RUNNING:
            await request_cancel(self.redis, job_id, by)
            return CancelOutcome(job_id, "stopping", job.status.value, "Stopping after the current step.")
        return CancelOutcome(job_id, "finished", job.status.value, f"The job had already {job.status.value}.")

    async def _to_head(self, job_id: str, tenant_id: int | None) -> None:
        head = await virtual_time(self.redis, self.queue_name)
        if tenant_id is not None and await self.redis.zrem(held_key(self.queue_name, tenant_id), job_id):
            await self.redis.zadd(self.queue_name, {job_id: head})
        else:
            await self.redis.zadd(self.queue_name, {job_id: head}, xx=True)


def _usage(pair: list[int]) -> Usage:
    return Usage(images=pair[0], gpu_seconds=pair[1] / 1000)
