"""Enqueue: admit, record and put the job on the arq queue at its fair place, exactly once per request.

The job id is derived from the request's identity (a Discord interaction id, a Slack event id, one CLI
invocation), so a redelivered request finds its job instead of making a second one, while two separate requests
with equal parameters are two jobs. Both the database (primary key) and arq (`_job_id`) refuse duplicates, and
the quota reservation is keyed by the job id too, so a repeat is never charged twice.

Order of work for a new request: admission (`quotas.ledger.reserve`, which raises `QuotaRefused` with a message
for the user, leaving nothing behind), the job record, then the arq job with its fair-share score
(`quotas.fairness`): a virtual time far in the past, hence the explicit `_expires`. A job enqueued without a
tenant is unmetered (internal jobs, tests): no quota, and fair-shared as one anonymous tenant of weight 1.

Lanes (`jobs.relax`): `lane` is what the person chose (`auto`, `fast` or `relax`); admission decides the lane the
job runs in (a spent fast budget sends an `auto` job to the relax lane where the tier allows it), and the job is
queued in that lane's band of scores. An unmetered job runs in the relax lane only when asked for it. A fast job
is noted as waiting, so that a running relax job gives way to it at its next step.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix
from tortoise.exceptions import IntegrityError

from jobs import events, prompt_check, routing
from jobs.queue_status import queue_position
from jobs.relax import lane_of, note_fast_waiting, record_lane
from jobs.specs import Imagine, ReplyTarget
from quotas.admin import JOB_EXPIRES_S, held_key
from quotas.estimates import estimate_seconds, spec_shape
from quotas.fairness import fair_tag
from quotas.ledger import AUTO, FAST, LANES, RELAX, refund, reserve, settle
from quotas.policy import policy_for
from quotas.tiers import Tiers
from storage.models import Image, Job, JobStatus, Tenant, User
from storage.quota_models import QuotaReservation, ReservationState
from storage.retention import record_job_inputs

log = logging.getLogger(__name__)

Spec = Imagine

# JOB_EXPIRES_S: how long a queued job may wait before arq drops it (arq's own default, passed explicitly because
# fair scores lie in the past); the worker then fails it and tells its user (jobs.lifecycle.abandon).

RECONCILE_AFTER_S = 60  # a reservation younger than this may belong to a request still being enqueued
RECONCILE_EVERY_S = 30

UNMETERED = "-"  # the fair-share key of jobs without a tenant


def job_id_for(request_id: str) -> str:
    """A short, stable job id for a request identity such as `discord:interaction:1234`."""
    return "j" + hashlib.blake2b(request_id.encode(), digest_size=10).hexdigest()


@dataclass(frozen=True)
class Enqueued:
    """The job a request made. `position` (1 = next to start) and `eta_s` (seconds until it is done) are as of
    enqueueing; ask `jobs.queue_status.queue_position` for fresh ones."""

    job_id: str
    created: bool  # False when the request had been seen before: nothing new was enqueued
    position: int | None = None
    eta_s: float | None = None
    lane: str = FAST  # the lane it runs in (jobs.relax)


async def enqueue(
    redis: ArqRedis,
    spec: Spec,
    *,
    request_id: str,
    reply_target: ReplyTarget,
    queue_name: str,
    tenant: Tenant | None = None,
    user: User | None = None,
    tiers: Tiers | None = None,
    lane: str = AUTO,
) -> Enqueued:
    """Admit, record and enqueue `spec` once for `request_id`; a repeat returns the existing job.

    Raises `quotas.errors.QuotaRefused` (a limit, a paused tenant, a banned user, a prompt the safety check
    refuses: jobs.prompt_check) before anything is recorded.
    The new job's first event on its stream is `queued`, with its lane, position and ETA. `lane`: see the module's
    docstring (ValueError for an unknown one)."""
    if lane not in LANES:
        raise ValueError(f"unknown lane {lane!r}: choose one of {', '.join(LANES)}")
    job_id = job_id_for(request_id)
    tiers = tiers or Tiers()
    shape = spec_shape(spec.model_dump(mode="json"))
    cost_ms = round(1000 * await estimate_seconds(redis, **shape))
    job = await Job.get_or_none(id=job_id)
    created = False
    admitted = RELAX if lane == RELAX else FAST  # an unmetered job's lane; a tenant's comes from admission
    if job is None:
        await prompt_check.check(spec, None if tenant is None else tenant.id)  # refuses before any charge
        reserved = False
        if tenant is not None:
            # At most every RECONCILE_EVERY_S per tenant: it reads every stale reservation of the tenant.
            if await redis.set(f"atelier:reconciled:{tenant.id}", 1, nx=True, ex=RECONCILE_EVERY_S):
                await reconcile(redis, queue_name, tenant)
            admission = await reserve(
                job_id,
                tenant=tenant,
                user=user,
                model=shape["model"],
                images=shape["count"],
                gpu_ms=cost_ms,
                tiers=tiers,
                lane=lane,
            )
            reserved, admitted = admission.created, admission.lane
        try:
            job = await Job.create(
                id=job_id,
                kind=spec.kind,
                model=getattr(spec, "model", ""),
                spec=spec.model_dump(mode="json"),
                status=JobStatus.QUEUED,
                tenant=tenant,
                user=user,
                reply_target=reply_target.model_dump(mode="json"),
            )
            created = True
        except IntegrityError:
            job = await Job.get(id=job_id)  # a twin of this request got there first (and was admitted)
        except BaseException:
            if reserved:
                await refund(job_id)
            raise
        if created:
            await _record_inputs(job)
    if job.status != JobStatus.QUEUED:
        return Enqueued(job_id, created=False)
    if not created:  # a repeat: the lane it was admitted in
        admitted = await lane_of(redis, job_id)
    tag, tier = await _fair_tag(redis, queue_name, job, cost_ms, tiers, admitted)
    # Read by the workers: the model by routing on every poll, the tier by the queue-wait metrics at start, the
    # lane by routing and the job (pre-emption).
    await routing.record_job(redis, job_id, model=job.model, tier=tier)
    await record_lane(redis, job_id, admitted)
    # For a repeat whose job is still queued this is a no-op in arq (same _job_id); it also covers a crash
    # between the insert above and this call, with the same score as before (the tag is kept per job).
    await redis.enqueue_job(
        spec.kind,
        job_id,
        _job_id=job_id,
        _queue_name=queue_name,
        _defer_until=datetime.fromtimestamp(tag / 1000, UTC),
        _expires=timedelta(seconds=JOB_EXPIRES_S),
    )
    if admitted == FAST and created:
        await note_fast_waiting(redis, queue_name, job_id)
    position, eta_s = await queue_position(redis, queue_name, job_id)
    if created:
        await events.publish(redis, job_id, "queued", position=position, eta_s=eta_s, lane=admitted)
    return Enqueued(job_id, created, position, eta_s, admitted)


async def _record_inputs(job: Job) -> None:
    """Note the job's input blobs for retention (jobs.retention). A failure only leaves them untracked, and so
    kept: it must not stop the job, which is recorded and admitted already."""
    try:
        await record_job_inputs(job.id, job.spec)
    except Exception:
        log.exception("job %s: its input blobs were not recorded for retention; they will be kept", job.id)


async def _fair_tag(
    redis: ArqRedis, queue_name: str, job: Job, cost_ms: int, tiers: Tiers, lane: str
) -> tuple[int, str]:
    """The job's fair tag in its lane, and its tenant's tier (UNMETERED for a job without a tenant)."""
    tenant_key, weight, tier = UNMETERED, 1.0, UNMETERED
    if job.tenant_id is not None:  # type: ignore[attr-defined]
        tenant = await Tenant.get(id=job.tenant_id)  # type: ignore[attr-defined]
        policy = await policy_for(tenant, tiers)
        tenant_key, weight, tier = str(tenant.id), policy.tier.weight, policy.tier.name
    tag = await fair_tag(
        redis,
        queue_name=queue_name,
        job_id=job.id,
        tenant_key=tenant_key,
        cost_ms=cost_ms,
        weight=weight,
        lane=lane,
    )
    return tag, tier


async def reconcile(redis: ArqRedis, queue_name: str, tenant: Tenant) -> int:
    """Close the tenant's reservations that nothing else will close, and return how many it closed.

    A reservation stays open only while its job may still run. It is settled or refunded here when its job
    ended without closing it (a crash between the two writes, or a job cancelled through arq's abort, which
    never calls the job function), refunded when the job record was never written, and refunded with the job
    marked failed when arq no longer has the job (it expired in the queue, or ran out of tries), with a worker job
    (`announce_end`) that tells its user. Called on each admission, so an abandoned job never holds its tenant's
    limits for long."""
    cutoff = datetime.now(UTC) - timedelta(seconds=RECONCILE_AFTER_S)
    stale = await QuotaReservation.filter(
        tenant_id=tenant.id, state=ReservationState.OPEN, created_at__lt=cutoff
    ).values_list("job_id", flat=True)
    closed = 0
    for job_id in stale:
        job = await Job.get_or_none(id=job_id)
        if job is None:
            closed += await refund(job_id)
        elif job.status == JobStatus.SUCCEEDED:
            images = await Image.filter(job_id=job_id).count()
            closed += await settle(job_id, gpu_seconds=job.gpu_seconds, images=images)
        elif job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            closed += await refund(job_id)
        elif not await _arq_has(redis, queue_name, job_id, tenant.id):
            lost = await Job.filter(id=job_id, status=job.status).update(
                status=JobStatus.FAILED,
                finished_at=datetime.now(UTC),
                error="The job expired in the queue or ran out of retries.",
            )
            if lost:
                log.warning("job %s was %s but arq no longer has it: failed and refunded", job_id, job.status)
                closed += await refund(job_id)
                # Its user is told by a worker (the platforms' repliers live there): once, whoever reconciles.
                await redis.enqueue_job(
                    "announce_end", job_id, _job_id=f"announce:{job_id}", _queue_name=queue_name
                )
    return closed


async def _arq_has(redis: ArqRedis, queue_name: str, job_id: str, tenant_id: int) -> bool:
    """Whether arq may still run the job: its definition exists (queued, held or running) or it is in progress."""
    if await redis.exists(job_key_prefix + job_id, in_progress_key_prefix + job_id):
        return True
    return await redis.zscore(held_key(queue_name, tenant_id), job_id) is not None
