"""A tenant's jobs, for admins: listing them and cancelling one (an owner may cancel their own)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from redis.asyncio import Redis

from quotas.admin_pause import held_key
from quotas.admin_tiers import TenantRef
from quotas.cancel import request_cancel
from quotas.fairness import virtual_time
from quotas.ledger import refund
from quotas.periods import utcnow
from quotas.policy import tenant_for
from storage.models import Job, JobStatus, User


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


class JobAdmin:
    """Lists and cancels jobs waiting in the arq `queues` on `redis`."""

    def __init__(self, redis: Redis, queues: Sequence[str]) -> None:
        self.redis, self.queues = redis, list(queues)

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

        A queued job is marked cancelled and refunded at once and will never run (it moves to the head of its
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
        """Move a cancelled job to the head of whichever queue holds it (or out of its paused tenant's held set
        into it), so that a worker drops it and tells its platform at once."""
        for queue in self.queues:
            head = await virtual_time(self.redis, queue)
            if tenant_id is not None and await self.redis.zrem(held_key(queue, tenant_id), job_id):
                await self.redis.zadd(queue, {job_id: head})
            else:
                await self.redis.zadd(queue, {job_id: head}, xx=True)
