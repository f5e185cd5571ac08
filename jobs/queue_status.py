"""Where a job stands in the queue and when it should be done; the queue's make-up per tier and model.

arq keeps a job in its sorted set, lowest score first, from enqueue until it finishes, and marks the running ones
with an in-progress key. A job's position counts the queued jobs ahead of it (1: it starts next); its ETA adds
the estimated GPU seconds of everything ahead of it (the unelapsed part for running jobs), shared among the live
workers, and its own. Estimates come from the moving averages in `quotas.estimates`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis

from jobs.heartbeat import live_workers
from quotas.estimates import estimate_seconds, spec_shape
from storage.models import Job, JobStatus
from storage.quota_models import QuotaReservation

_LIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


@dataclass(frozen=True)
class QueueLine:
    """Jobs of one tier and model in the queue; `gpu_seconds` is their estimated GPU time still to come."""

    tier: str
    model: str
    queued: int
    running: int
    gpu_seconds: float


@dataclass(frozen=True)
class _Entry:
    job: Job
    running: bool
    seconds_left: float


async def queue_position(redis: Redis, queue_name: str, job_id: str) -> tuple[int | None, float | None]:
    """`(position, eta_s)` of a job: position 1 starts next, 0 is running; `(None, None)` when the job is not in
    the queue (finished, cancelled, held for a paused tenant, or unknown)."""
    rank = await redis.zrank(queue_name, job_id)
    if rank is None:
        return None, None
    ids = [_text(i) for i in await redis.zrange(queue_name, 0, rank)]
    entries = await _entries(redis, ids)
    me = entries.get(job_id)
    if me is None:
        return None, None
    if me.running:
        return 0, me.seconds_left
    ahead = [entries[i] for i in ids[:-1] if i in entries]

    workers = max(1, await live_workers(redis, queue_name))
    position = 1 + sum(1 for e in ahead if not e.running)
    return position, sum(e.seconds_left for e in ahead) / workers + me.seconds_left


async def queue_status(redis: Redis, queue_name: str) -> list[QueueLine]:
    """The queue per tier and model (jobs without a tenant count under tier `unmetered`), largest first."""
    ids = [_text(i) for i in await redis.zrange(queue_name, 0, -1)]
    entries = await _entries(redis, ids)
    tiers = dict(await QuotaReservation.filter(job_id__in=list(entries)).values_list("job_id", "tier"))
    lines: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0, 0.0])
    for job_id, e in entries.items():
        line = lines[(tiers.get(job_id, "unmetered"), e.job.model)]
        line[1 if e.running else 0] += 1
        line[2] += e.seconds_left
    return sorted(
        (QueueLine(tier, model, int(q), int(r), s) for (tier, model), (q, r, s) in lines.items()),
        key=lambda line: (-(line.queued + line.running), line.tier, line.model),
    )


async def _entries(redis: Redis, ids: list[str]) -> dict[str, _Entry]:
    """The live jobs among `ids`, with whether each is running and its estimated GPU seconds still to come."""
    if not ids:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.exists(in_progress_key_prefix + job_id)
        running = dict(zip(ids, await pipe.execute(), strict=True))
    jobs = await Job.filter(id__in=ids, status__in=_LIVE).only("id", "model", "spec", "started_at")
    now = datetime.now(UTC)
    cache: dict[tuple, float] = {}
    entries = {}
    for job in jobs:
        shape = spec_shape(job.spec)
        key = tuple(shape.values())
        if key not in cache:
            cache[key] = await estimate_seconds(redis, **shape)
        seconds = cache[key]
        is_running = bool(running[job.id])
        if is_running and job.started_at is not None:
            seconds = max(0.0, seconds - (now - job.started_at).total_seconds())
        entries[job.id] = _Entry(job, is_running, seconds)
    return entries


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
