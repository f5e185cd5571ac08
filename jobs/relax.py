"""The relax lane: jobs past their fast budget that run only on idle GPU time, pre-empted between steps.

Where a job goes is decided at admission (`quotas.ledger.reserve`: `auto`, `fast` or `relax`; a relax job's GPU
time is recorded, not charged against the fast budget). This module is what the lane means for the queue and
the worker:

- Order: a relax job's arq score lies in a band above every fast job's (`quotas.fairness.RELAX_BASE`), fair
  between tenants inside the band by the same virtual clock, so a worker takes a relax job only when no fast job
  is ahead of it. Model-aware routing (`jobs.routing.choose`) may pass a fast job over for a while; it never
  takes a relax job while a fast one it may serve waits.
- Waiting fast jobs: `enqueue` adds each fast job to a sorted set per queue (`waiting_key`, scored with Redis's
  own clock), and a worker removes it when it takes the job (whether it runs or was cancelled meanwhile). A
  worker that takes several jobs at once (batching) may take a fast job while its own GPU thread runs a relax
  one: then the fast job tells that relax job directly (`GiveWay`, in the worker's ctx) instead.
- Pre-emption: a running relax job asks Redis after every denoising step, from the GPU thread (one round trip,
  `FAST_WAITS`), whether a fast job waits: one still in the queue and not running (entries that are neither are
  dropped on the way). If one does, the step callback raises `engine.generate.Preempted`; the engine hands back
  the latents after that step; the worker stores them, the step and the GPU seconds used so far in Redis
  (`state_key`, with a TTL as long as a job may wait: any worker may resume it), puts the job back in the queue
  at its relax place (arq's `Retry`, which does not count as a try) and takes the fast job on its next poll.
- Resume: the next run starts the denoising loop at the saved step from the saved latents (`engine.batching`)
  instead of from noise; the image is the one an uninterrupted run makes (exactly for DDIM, the tiny SD 1.5
  scheduler; see `engine.batching.resumed_at` for the others).

What pre-empts: plain text-to-image (`imagine`) without the hires fix and without per-image chaos guidance. Every
other kind of relax job (and a hires or chaos imagine) still waits for idle time, but runs to its end once
started. A fast job held for a paused tenant, or one no live worker may serve, pre-empts nothing: it is not in
the queue, or its entry is dropped when the check finds it already taken.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arq.constants import in_progress_key_prefix, retry_key_prefix
from redis.asyncio import Redis

from engine.generate import Preempted, Resume
from quotas.ledger import FAST, RELAX

log = logging.getLogger(__name__)

STATE_TTL_S = 3 * 24 * 3600  # as long as a job may wait in the queue and retry (quotas.fairness.TAG_TTL_MS)
CHECKS_KEPT = 64  # the latest step checks of a relax job kept for its status (and the tests)
CHECK_TIMEOUT_S = 2.0  # a check Redis does not answer in time pre-empts nothing

__all__ = ["FAST", "RELAX", "Preempted", "Resume"]


def waiting_key(queue_name: str) -> str:
    return f"atelier:lane:fast-waiting:{queue_name}"


def state_key(job_id: str) -> str:
    return f"atelier:relax:state:{job_id}"


def checks_key(job_id: str) -> str:
    return f"atelier:relax:checks:{job_id}"


def lane_key(job_id: str) -> str:
    return f"atelier:route:lane:{job_id}"


_NOTE_WAITING = """
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'NX', ms, ARGV[1])
return ms
"""

# KEYS: waiting set, the queue, the relax job's checks list. ARGV: in-progress key prefix, step, keep, a fast job
# this worker took meanwhile ("" if none). Returns the first fast job still waiting (queued, not running) and
# when it was queued, or nothing; every entry that is no longer waiting is dropped. The check is recorded (step,
# Redis time, the fast job it gives way to or "") either way.
FAST_WAITS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local found, since = ARGV[4], ''
local entries = {}
if found == '' then entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES') end
for i = 1, #entries, 2 do
  local id = entries[i]
  if redis.call('ZSCORE', KEYS[2], id) and redis.call('EXISTS', ARGV[1] .. id) == 0 then
    found, since = id, entries[i + 1]
    break
  end
  redis.call('ZREM', KEYS[1], id)
end
redis.call('LPUSH', KEYS[3], ARGV[2] .. ' ' .. now .. ' ' .. found)
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[3]) - 1)
redis.call('EXPIRE', KEYS[3], 86400)
return {found, since}
"""


async def note_fast_waiting(redis: Redis, queue_name: str, job_id: str) -> None:
    """A fast job was queued: relax jobs running now give way to it at their next step."""
    await redis.eval(_NOTE_WAITING, 1, waiting_key(queue_name), job_id)


async def note_taken(redis: Redis, queue_name: str, job_id: str) -> None:
    """A worker took the job (to run it, or to close it): it no longer waits."""
    await redis.zrem(waiting_key(queue_name), job_id)


class GiveWay(threading.Event):
    """Set by a fast job this worker took while it runs relax job(s) (see the module's docstring); `by`: its id."""

    by: str = ""

    def give_way_to(self, job_id: str) -> None:
        self.by = job_id
        self.set()


async def fast_job_waiting(
    redis: Redis, queue_name: str, *, job_id: str, step: int, local: str = ""
) -> tuple[str, int | None] | None:
    """The fast job a relax job `job_id`, after `step`, should give way to (`local`: one this worker took; else
    one waiting in the queue, with when it was queued, Redis time in ms), or None; the check is recorded
    (`checks`)."""
    found, since = await redis.eval(
        FAST_WAITS,
        3,
        waiting_key(queue_name),
        queue_name,
        checks_key(job_id),
        in_progress_key_prefix,
        step,
        CHECKS_KEPT,
        local,
    )
    found = found.decode() if isinstance(found, bytes) else found
    since = since.decode() if isinstance(since, bytes) else since
    return (found, int(float(since)) if since else None) if found else None


async def checks(redis: Redis, job_id: str) -> list[tuple[int, int, str]]:
    """The latest step checks of a relax job, oldest first: (step, Redis time in ms, fast job seen or "")."""
    rows = []
    for raw in reversed(await redis.lrange(checks_key(job_id), 0, -1)):
        step, at, *seen = (raw.decode() if isinstance(raw, bytes) else raw).split(" ")
        rows.append((int(step), int(at), seen[0] if seen else ""))
    return rows


async def record_lane(redis: Redis, job_id: str, lane: str) -> None:
    """Note the lane a job was admitted in, for the worker that runs it (beside routing's notes)."""
    from jobs.routing import KEY_TTL_S

    await redis.set(lane_key(job_id), lane, ex=KEY_TTL_S)


async def lane_of(redis: Redis, job_id: str) -> str:
    value = await redis.get(lane_key(job_id))
    return value.decode() if isinstance(value, bytes) else (value or FAST)


def preemptible(
    report: Callable[[int, int, Any], None],
    *,
    loop: asyncio.AbstractEventLoop,
    redis: Redis,
    queue_name: str,
    job_id: str,
    give_way: GiveWay,
) -> Callable[[int, int, Any], None]:
    """`report`, preceded (in the GPU thread, after each step) by the check for a waiting fast job (`give_way`:
    one this worker took): raises `Preempted` when one waits, except after the last step (the job is done then)."""

    def report_or_give_way(step: int, total: int, preview: Any) -> None:
        if step < total:
            local = give_way.by if give_way.is_set() else ""
            check = fast_job_waiting(redis, queue_name, job_id=job_id, step=step, local=local)
            try:
                seen = asyncio.run_coroutine_threadsafe(check, loop).result(CHECK_TIMEOUT_S)
            except Exception as exc:  # Redis away or slow: go on, the next step asks again
                log.warning("job %s: the relax lane's check failed (%s); going on", job_id, exc)
                seen = (local, None) if local else None
            if seen is not None:
                raise Preempted(step, total, by=seen[0])
        report(step, total, preview)

    return report_or_give_way


@dataclass(frozen=True)
class Saved:
    """What a pre-empted relax job left for its next run."""

    resume: Resume | None  # None: nothing to resume from (only GPU seconds to carry)
    gpu_seconds: float  # used by its earlier runs, charged (to the ledger, not the fast budget) at the end
    preemptions: int


async def save(redis: Redis, job_id: str, preempted: Preempted, gpu_seconds: float) -> Saved:
    """Store a pre-empted job's state (latents after `preempted.step`, the GPU seconds so far) for any worker."""
    import torch

    earlier = await load(redis, job_id)
    buffer = io.BytesIO()
    torch.save(preempted.latents, buffer)
    saved = Saved(
        Resume(preempted.step, preempted.latents),
        earlier.gpu_seconds + gpu_seconds,
        earlier.preemptions + 1,
    )
    await redis.hset(
        state_key(job_id),
        mapping={
            "step": preempted.step,
            "latents": buffer.getvalue(),
            "gpu_seconds": repr(saved.gpu_seconds),
            "preemptions": saved.preemptions,
        },
    )
    await redis.expire(state_key(job_id), STATE_TTL_S)
    return saved


async def load(redis: Redis, job_id: str) -> Saved:
    """The state a pre-empted job left (nothing to resume from when it was never pre-empted)."""
    values = await redis.hgetall(state_key(job_id))
    if not values:
        return Saved(None, 0.0, 0)
    values = {k.decode() if isinstance(k, bytes) else k: v for k, v in values.items()}
    resume = None
    if values.get("latents"):
        import torch

        latents = torch.load(io.BytesIO(values["latents"]), weights_only=True)
        resume = Resume(int(values["step"]), latents)
    return Saved(resume, float(values.get("gpu_seconds") or 0), int(values.get("preemptions") or 0))


async def forget(redis: Redis, job_id: str) -> None:
    """The job ended: its saved state is no longer needed."""
    await redis.delete(state_key(job_id))


async def give_way(redis: Redis, job_id: str) -> None:
    """Before re-queueing a pre-empted job with arq's `Retry`: a pre-emption is not a failed try, so the try
    arq counted for this run is given back (arq refuses a job past its `max_tries`)."""
    await redis.decr(retry_key_prefix + job_id)


def resumable_spec(kind: str, spec: dict) -> bool:
    """Whether a job of this kind and spec can give way between steps: plain text-to-image, one engine call
    (no hires fix, which is two passes, and no per-image chaos guidance, which is one call per image)."""
    return (
        kind == "imagine"
        and spec.get("first_width") is None
        and not (spec.get("chaos") and int(spec.get("count", 1)) > 1)
    )


def lane_note() -> str:
    """What a relax-lane job's status says, in every front-end."""
    return "Relax lane: it runs when no fast job waits, and is not charged against your fast budget."
