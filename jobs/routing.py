"""Model-aware routing: a queued job goes first to a worker that has its model resident, to any other worker only
after a bounded wait, so a mixed queue does not make every GPU load and evict pipelines over and over.

The rule (`choose`, pure, shared by the worker and `bench/fleet.py`): an idle worker walks the queue in its fair
order (quotas.fairness) and takes the first job that it may serve and that

- needs a model resident on this worker, or no model at all, or
- needs a model that no other live worker that may serve it has resident (somebody has to load it: now), or
- has been passed over for `wait_s` seconds already (by any worker).

Any other job is passed over. When the worker then takes nothing at all (it would stay idle while the job
waits), the first such pass is recorded in Redis (`SET NX`), so every worker counts the wait from the same
instant. That is the bound: no worker stays idle longer than `wait_s` (plus one poll) while a job it may serve
waits for a busy holder; after that the job is anyone's, at its fair place. A worker that passes a job over to
take one of its own models' jobs is busy, and the passed job is the first of its model in fair order for the
workers that hold it: it is reordered only against other models' jobs, never within its model, its tenant or
its tier, and it cannot starve (its holders take it next, or an idle worker within `wait_s`). Recording every
pass instead (also those of busy workers) made the bound expire for the whole head of the queue as soon as a
backlog formed, and routing fell back to plain fair order, with a load per job, exactly when it was needed
(bench/fleet.py showed 42 loads per 100 jobs either way). `wait_s` 0 turns routing off (arq's plain fair
order). A job for a model that no live worker may serve (every worker runs
with `--models` that leaves it out) stays queued, at its place and visible in the queue position, until such a
worker appears or the job expires (then its user is told, jobs.lifecycle.abandon).

The relax lane (jobs.relax): relax jobs sort after every fast job, and a worker takes none while a fast job that
it may serve is among the candidates, even one it passes over for now (routing reorders only within a lane).

What the workers hold comes from their heartbeats (`advert`, jobs.heartbeat): the models each may serve (None:
any), the ones resident (plus those of the jobs it is running, which it is loading or has loaded), the LoRAs on
its disk and the GPU memory free. The job's model is written at enqueue beside the arq job (`record_job`), so
a poll costs one MGET, not a database read. Torch-free: front-ends import it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis

DEFAULT_WAIT_S = (
    5.0  # bench/fleet.py: at 3 s, busy 86-90 % across seeds; at 5 s, 90-92 % and under 1 load per 100 jobs
)
FLEET_REFRESH_S = 0.5  # how long a worker trusts its last read of the other workers' heartbeats
KEY_TTL_S = 3 * 24 * 3600  # longer than a job may wait in the queue (quotas.admin.JOB_EXPIRES_S) and retry


def model_key(job_id: str) -> str:
    return f"atelier:route:model:{job_id}"


def passed_key(job_id: str) -> str:
    return f"atelier:route:passed:{job_id}"


@dataclass(frozen=True)
class Candidate:
    """A queued job as routing sees it. `model` "" or None: the job needs no particular model (anyone takes it).
    `passed_at`: when a worker first passed it over (seconds since the epoch), None if never."""

    job_id: str
    model: str | None = None
    passed_at: float | None = None
    relax: bool = False  # in the relax lane: taken only while no fast job this worker may serve waits


@dataclass(frozen=True)
class Peer:
    """Another live worker, from its heartbeat. `serves` None: it may serve any model."""

    worker_id: str
    serves: frozenset[str] | None = None
    resident: frozenset[str] = frozenset()

    def holds(self, model: str) -> bool:
        return model in self.resident and (self.serves is None or model in self.serves)


@dataclass(frozen=True)
class Decision:
    """`take`: the jobs to try, in fair order (arq's own checks still apply: another worker may win one).
    `passed`: the jobs passed over for the first time by this worker taking nothing (their instant is to be
    recorded); empty whenever `take` is not."""

    take: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)


def may_serve(serves: frozenset[str] | None, model: str | None) -> bool:
    """Whether a worker restricted to `serves` (None: unrestricted) may run a job needing `model`."""
    return serves is None or not model or model in serves


def choose(
    candidates: Sequence[Candidate],
    *,
    resident: Iterable[str],
    serves: frozenset[str] | None,
    peers: Iterable[Peer],
    now: float,
    wait_s: float,
) -> Decision:
    """Which of `candidates` (in fair order) this worker should try to start now; see the module's docstring."""
    resident = frozenset(resident)
    held_elsewhere = {m for peer in peers for m in peer.resident if peer.holds(m)} if wait_s > 0 else set()
    take: list[str] = []
    passed: list[str] = []
    fast_waits = any(not job.relax and may_serve(serves, job.model) for job in candidates)
    for job in candidates:
        if not may_serve(serves, job.model):
            continue  # not ours to run: it waits for a worker that serves its model
        if job.relax and fast_waits:
            continue  # idle GPU time only
        if (
            wait_s <= 0
            or not job.model
            or job.model in resident
            or job.model not in held_elsewhere
            or (job.passed_at is not None and now - job.passed_at >= wait_s)
        ):
            take.append(job.job_id)
        elif job.passed_at is None:
            passed.append(job.job_id)
    return Decision(take, [] if take else passed)


def advert(
    *,
    host: str,
    pid: int,
    serves: frozenset[str] | None,
    resident: Iterable[str],
    loras: Iterable[str] = (),
    gpu_free_bytes: int | None = None,
) -> str:
    """A worker's heartbeat value: who it is and what it can serve and holds (JSON)."""
    return json.dumps(
        {
            "host": host,
            "pid": pid,
            "serves": None if serves is None else sorted(serves),
            "resident": sorted(set(resident)),
            "loras": sorted(set(loras)),
            "gpu_free_bytes": gpu_free_bytes,
        }
    )


def parse_advert(worker_id: str, value: bytes | str | None) -> Peer:
    """The peer a heartbeat value describes; a value that is not an advert (an older worker's "host:pid")
    describes a worker that may serve anything and holds nothing we know of."""
    try:
        data = json.loads(value or "")
    except (ValueError, TypeError):
        return Peer(worker_id)
    if not isinstance(data, dict):
        return Peer(worker_id)
    serves = data.get("serves")
    return Peer(
        worker_id,
        None if serves is None else frozenset(serves),
        frozenset(data.get("resident") or ()),
    )


def tier_key(job_id: str) -> str:
    return f"atelier:route:tier:{job_id}"


async def record_job(redis: Redis, job_id: str, *, model: str | None, tier: str) -> None:
    """Note what the workers need to know of a queued job without reading the database (done by
    `jobs.queue.enqueue`): the model it needs, for routing, and its tenant's tier, for the queue-wait metrics."""
    async with redis.pipeline(transaction=False) as pipe:
        if model:
            pipe.set(model_key(job_id), model, ex=KEY_TTL_S)
        pipe.set(tier_key(job_id), tier, ex=KEY_TTL_S)
        await pipe.execute()


async def tier_of(redis: Redis, job_id: str) -> str:
    """The tier noted for a job at enqueue ("" if none was: a job queued by an older version)."""
    value = await redis.get(tier_key(job_id))
    return value.decode() if value else ""


class Router:
    """One worker's side of routing: reads the candidates' models and first-pass instants and the other
    workers' heartbeats (cached for `FLEET_REFRESH_S`), applies `choose`, records first passes."""

    def __init__(
        self,
        *,
        queue_name: str,
        worker_id: str,
        serves: frozenset[str] | None,
        wait_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue_name = queue_name
        self.worker_id = worker_id
        self.serves = serves
        self.wait_s = wait_s
        self.clock = clock
        self._peers: list[Peer] = []
        self._peers_read = float("-inf")
        self._models: dict[str, str] = {}  # job id -> model, of the candidates last read

    @property
    def active(self) -> bool:
        """Whether this worker filters the queue at all (routing on, or restricted to some models)."""
        return self.wait_s > 0 or self.serves is not None

    def model_of(self, job_id: str) -> str | None:
        """The model of a job among the candidates last read, if it needs one."""
        return self._models.get(job_id)

    async def order(self, redis: Redis, job_ids: Sequence[bytes], resident: Iterable[str]) -> list[bytes]:
        """The ids among `job_ids` (arq's head of the queue, fair order) this worker should try to start, given
        the models it holds now (`resident`)."""
        if not job_ids:
            return list(job_ids)
        from arq.constants import in_progress_key_prefix

        from jobs.relax import RELAX, lane_key

        ids = [j.decode() for j in job_ids]
        n = len(ids)
        keys = [model_key(i) for i in ids] + [passed_key(i) for i in ids] + [lane_key(i) for i in ids]
        values = await redis.mget(keys + [in_progress_key_prefix + i for i in ids])
        models, passes, lanes, running = (values[k * n : (k + 1) * n] for k in range(4))
        # Running jobs stay in arq's queue until they end: a running fast job does not wait, nor keep relax out.
        candidates = [
            Candidate(
                i, m.decode() if m else None, float(p) if p else None, bool(lane) and lane.decode() == RELAX
            )
            for i, m, p, lane, busy in zip(ids, models, passes, lanes, running, strict=True)
            if busy is None
        ]
        if not self.active:  # no routing: arq's fair order, but never a relax job while a fast one waits
            fast_waits = any(not c.relax for c in candidates)
            return [c.job_id.encode() for c in candidates if not (c.relax and fast_waits)]
        self._models = {c.job_id: c.model for c in candidates if c.model}
        now = self.clock()
        decision = choose(
            candidates,
            resident=resident,
            serves=self.serves,
            peers=await self._fleet(redis) if self.wait_s > 0 else (),
            now=now,
            wait_s=self.wait_s,
        )
        if decision.passed:
            async with redis.pipeline(transaction=False) as pipe:
                for job_id in decision.passed:
                    pipe.set(passed_key(job_id), repr(now), nx=True, ex=KEY_TTL_S)
                await pipe.execute()
        return [j.encode() for j in decision.take]

    async def _fleet(self, redis: Redis) -> list[Peer]:
        from jobs.heartbeat import heartbeat_key, workers_key

        if self.clock() - self._peers_read < FLEET_REFRESH_S:
            return self._peers
        members = await redis.smembers(workers_key(self.queue_name))
        ids = sorted(m.decode() for m in members if m.decode() != self.worker_id)
        values = await redis.mget([heartbeat_key(self.queue_name, i) for i in ids]) if ids else []
        gone = [i for i, v in zip(ids, values, strict=True) if v is None]
        if gone:  # stopped or dead: a live one adds itself again on its next beat
            await redis.srem(workers_key(self.queue_name), *gone)
        self._peers = [parse_advert(i, v) for i, v in zip(ids, values, strict=True) if v is not None]
        self._peers_read = self.clock()
        return self._peers

    def forget_fleet(self) -> None:
        """Read the other workers' heartbeats afresh on the next poll."""
        self._peers_read = float("-inf")
