"""Enqueue: write the job record and put the job on the arq queue, exactly once per request.

The job id is derived from the request's identity (a Discord interaction id, a Slack event id, one CLI
invocation), so a redelivered request finds its job instead of making a second one, while two separate requests
with equal parameters are two jobs. Both the database (primary key) and arq (`_job_id`) refuse duplicates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from arq.connections import ArqRedis
from tortoise.exceptions import IntegrityError

from jobs.specs import Imagine, ReplyTarget
from storage.models import Job, JobStatus, Tenant, User

Spec = Imagine


def job_id_for(request_id: str) -> str:
    """A short, stable job id for a request identity such as `discord:interaction:1234`."""
    return "j" + hashlib.blake2b(request_id.encode(), digest_size=10).hexdigest()


@dataclass(frozen=True)
class Enqueued:
    job_id: str
    created: bool  # False when the request had been seen before: nothing new was enqueued


async def enqueue(
    redis: ArqRedis,
    spec: Spec,
    *,
    request_id: str,
    reply_target: ReplyTarget,
    queue_name: str,
    tenant: Tenant | None = None,
    user: User | None = None,
) -> Enqueued:
    """Record and enqueue `spec` once for `request_id`; a repeat returns the existing job."""
    job_id = job_id_for(request_id)
    try:
        await Job.create(
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
        created = False
        job = await Job.get(id=job_id)
        if job.status != JobStatus.QUEUED:
            return Enqueued(job_id, created=False)
    # For a repeat whose job is still queued this is a no-op in arq (same _job_id); it also covers a crash
    # between the insert above and this call.
    await redis.enqueue_job(spec.kind, job_id, _job_id=job_id, _queue_name=queue_name)
    return Enqueued(job_id, created=created)
