"""A fleet of GPU workers under a mixed queue, simulated: is model-aware routing worth it, and how many GPUs a load
needs.

    python bench/fleet.py                      # 4 workers, 80 % load, routing on (5 s) and off, side by side
    python bench/fleet.py --workers 6 --load 0.9 --wait 5 --jobs 8000

Discrete events in simulated time, with Atelier's real scheduling code: the fair order is `quotas.fairness`'s
Lua script on a real Redis (the embedded redis-server, as `atelier demo` starts it), and what each idle worker
takes is `jobs.routing.choose`, the function `atelier worker` calls on every poll. Only the GPU is simulated:
each image costs its model's seconds per image on an H200 (bench/gpu_throughput.py's figures: SD 1.5 at
512²/30 steps 0.93 s, SDXL at 1024²/30 steps 1.92 s, Flux-schnell at 1024²/4 steps 0.82 s), and a model that is
not resident costs a cold load first (3 s, 8 s, 15 s: reading fp16 weights from a local disk and moving them to
the GPU). Each worker keeps models under a memory budget, least recently used evicted first, as engine.cache
does. The default budget, 40 GB (ATELIER_MODEL_MEMORY_GB=40), holds any two of the three models and never all
three (SD 1.5 2.6 GB, SDXL 7 GB, Flux 33 GB in bf16): the case where a job runs decides what is loaded.
`--budget-gb 36` (75 % of a 48 GB card, engine.cache's default share) holds Flux alone; on a whole H200 (105 GB
of weights) all three stay resident and nothing is ever evicted, with or without routing: `--budget-gb 105`.

The load: 50 tenants (35 free, 10 standard, 5 priority: weights 1, 2 and 4 from quotas.tiers) send jobs as one
Poisson stream at the rate that keeps `--load` of the fleet busy; each tenant has a favourite model (70 % of its
jobs; otherwise any of the three), and a job asks for 1, 2 or 4 images (50/25/25 %). Seeded: the same
arguments print the same table. Heartbeats are read fresh here (a real worker's view of the others is at most
FLEET_REFRESH_S old, and a worker announces a model it starts loading at once).

Columns:
    busy %        share of the workers' time spent generating while a job waited in the queue (idle or loading
                  while work waits is lost capacity; at 80 % load the plain utilisation is 80 % by definition,
                  shown as util %)
    loads/100     cold model loads per 100 jobs (evictions follow loads once a budget is full)
    wait p50/p95  seconds from arrival to start, per tier
    passed max    the bound: the longest any job was left waiting by an idle worker for another worker that
                  holds its model (routing promises at most --wait; then the job is anyone's at its fair place)
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import heapq
import itertools
import random
import statistics
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis.asyncio import Redis

from atelier.embedded_redis import EmbeddedRedis
from jobs.routing import DEFAULT_WAIT_S, Candidate, Peer, choose
from quotas.fairness import fair_tag
from quotas.tiers import DEFAULT_TIERS


@dataclass(frozen=True)
class Model:
    s_per_image: float
    load_s: float
    gb: float


MODELS = {
    "sd15": Model(0.93, 3.0, 2.6),
    "sdxl": Model(1.92, 8.0, 7.0),
    "flux-schnell": Model(0.82, 15.0, 33.0),
}
TIER_COUNTS = {"free": 35, "standard": 10, "priority": 5}
IMAGES = ((1, 0.5), (2, 0.25), (4, 0.25))
FAVOURITE_SHARE = 0.7
READ_LIMIT = 100  # arq's queue_read_limit: how much of the queue's head a poll sees


@dataclass
class Job:
    id: str
    tenant: int
    tier: str
    model: str
    images: int
    arrival: float
    tag: int = 0
    first_pass: float | None = None
    start: float | None = None

    @property
    def gpu_s(self) -> float:
        return self.images * MODELS[self.model].s_per_image


@dataclass
class Gpu:
    index: int
    budget_gb: float
    lru: OrderedDict[str, None] = field(default_factory=OrderedDict)
    running: Job | None = None
    loading_until: float = 0.0
    loads: int = 0
    evictions: int = 0

    def holds(self) -> frozenset[str]:
        held = set(self.lru)
        if self.running is not None:
            held.add(self.running.model)
        return frozenset(held)

    def load(self, model: str) -> float:
        """Make `model` resident (LRU within the budget); the seconds it cost."""
        if model in self.lru:
            self.lru.move_to_end(model)
            return 0.0
        while self.lru and sum(MODELS[m].gb for m in self.lru) + MODELS[model].gb > self.budget_gb:
            self.lru.popitem(last=False)
            self.evictions += 1
        self.lru[model] = None
        self.loads += 1
        return MODELS[model].load_s


def workload(args: argparse.Namespace) -> list[Job]:
    rng = random.Random(args.seed)
    tiers = [tier for tier, n in TIER_COUNTS.items() for _ in range(n)]
    favourites = [rng.choice(list(MODELS)) for _ in tiers]
    any_model_s = statistics.fmean(m.s_per_image for m in MODELS.values())
    per_image_s = statistics.fmean(
        FAVOURITE_SHARE * MODELS[f].s_per_image + (1 - FAVOURITE_SHARE) * any_model_s for f in favourites
    )
    mean_gpu_s = sum(n * p for n, p in IMAGES) * per_image_s  # so that --load is the offered load
    rate = args.load * args.workers / mean_gpu_s
    jobs, now = [], 0.0
    for i in range(args.jobs):
        now += rng.expovariate(rate)
        tenant = rng.randrange(len(tiers))
        model = favourites[tenant] if rng.random() < FAVOURITE_SHARE else rng.choice(list(MODELS))
        images = rng.choices([n for n, _ in IMAGES], [p for _, p in IMAGES])[0]
        jobs.append(Job(f"j{i}", tenant, tiers[tenant], model, images, now))
    return jobs


@dataclass
class Result:
    busy: float
    util: float
    loads_per_100: float
    evictions_per_100: float
    waits: dict[str, list[float]]
    passed_max: float


async def simulate(redis: Redis, jobs: list[Job], args: argparse.Namespace, wait_s: float) -> Result:
    queue_name = f"bench:fleet:{wait_s}"
    gpus = [Gpu(i, args.budget_gb) for i in range(args.workers)]
    queue: list[tuple[int, str]] = []  # (fair tag, job id), lowest first: arq's order
    by_id: dict[str, Job] = {}
    events: list[tuple[float, int, str, int]] = []  # (time, seq, kind, index)
    seq = 0

    def push(at: float, kind: str, index: int) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, seq, kind, index))

    for index, job in enumerate(jobs):
        push(job.arrival, "arrive", index)
    wakes: dict[int, float] = {}
    passed_max = 0.0
    generating_waiting = lost_waiting = generating_all = 0.0
    last = 0.0

    async def start(gpu: Gpu, job: Job, now: float) -> None:
        queue.remove((job.tag, job.id))
        await redis.zrem(queue_name, job.id)
        job.start = now
        load_s = gpu.load(job.model)
        gpu.running = job
        gpu.loading_until = now + load_s
        push(now + load_s + job.gpu_s, "done", gpu.index)

    async def dispatch(now: float) -> None:
        nonlocal passed_max
        for gpu in gpus:
            if gpu.running is not None or not queue:
                continue
            head = [by_id[job_id] for _, job_id in queue[:READ_LIMIT]]
            candidates = [Candidate(j.id, j.model, j.first_pass) for j in head]
            peers = [Peer(str(o.index), resident=o.holds()) for o in gpus if o is not gpu]
            decision = choose(
                candidates, resident=gpu.holds(), serves=None, peers=peers, now=now, wait_s=wait_s
            )
            for job_id in decision.passed:
                by_id[job_id].first_pass = now
            taken = by_id[decision.take[0]] if decision.take else None
            for job in head:  # passed over at this poll: every job ahead of the one taken (or all)
                if job is taken:
                    break
                if job.first_pass is not None:
                    passed_max = max(passed_max, now - job.first_pass)
            if taken is not None:
                await start(gpu, taken, now)
                continue
            due = [
                j.first_pass + wait_s
                for j in head
                if j.first_pass is not None and j.first_pass + wait_s > now
            ]
            if due and wakes.get(gpu.index, float("inf")) > min(due):
                wakes[gpu.index] = min(due)
                push(min(due), "wake", gpu.index)

    while events:
        now, _, kind, index = heapq.heappop(events)
        dt = now - last
        for gpu in gpus:
            generating = gpu.running is not None and now > gpu.loading_until
            gen_dt = max(0.0, now - max(last, gpu.loading_until)) if gpu.running is not None else 0.0
            generating_all += gen_dt
            if queue:
                generating_waiting += gen_dt
                lost_waiting += dt - gen_dt
            del generating
        last = now
        if kind == "arrive":
            job = jobs[index]
            weight = DEFAULT_TIERS[job.tier].weight
            job.tag = await fair_tag(
                redis,
                queue_name=queue_name,
                job_id=job.id,
                tenant_key=str(job.tenant),
                cost_ms=round(job.gpu_s * 1000),
                weight=weight,
            )
            await redis.zadd(queue_name, {job.id: job.tag})
            bisect.insort(queue, (job.tag, job.id))
            by_id[job.id] = job
        elif kind == "done":
            gpus[index].running = None
        elif kind == "wake":
            if wakes.get(index) == now:
                del wakes[index]
        await dispatch(now)

    waits: dict[str, list[float]] = {tier: [] for tier in TIER_COUNTS}
    for job in jobs:
        waits[job.tier].append(job.start - job.arrival)
    loads = sum(g.loads for g in gpus)
    return Result(
        busy=generating_waiting / max(1e-9, generating_waiting + lost_waiting),
        util=generating_all / (last * len(gpus)),
        loads_per_100=100 * loads / len(jobs),
        evictions_per_100=100 * sum(g.evictions for g in gpus) / len(jobs),
        waits=waits,
        passed_max=passed_max,
    )


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def table(args: argparse.Namespace, on: Result, off: Result) -> tuple[str, bool]:
    rows = [
        ("busy % (generating while jobs wait)", f"{100 * on.busy:.1f}", f"{100 * off.busy:.1f}"),
        ("util % (generating, all time)", f"{100 * on.util:.1f}", f"{100 * off.util:.1f}"),
        ("model loads per 100 jobs", f"{on.loads_per_100:.2f}", f"{off.loads_per_100:.2f}"),
        ("evictions per 100 jobs", f"{on.evictions_per_100:.2f}", f"{off.evictions_per_100:.2f}"),
    ]
    for tier in TIER_COUNTS:
        weight = DEFAULT_TIERS[tier].weight
        rows.append(
            (
                f"wait p50 / p95 s, {tier} (weight {weight:g})",
                f"{p(on.waits[tier], 50):.2f} / {p(on.waits[tier], 95):.2f}",
                f"{p(off.waits[tier], 50):.2f} / {p(off.waits[tier], 95):.2f}",
            )
        )
    rows.append(("passed max s (bound: the wait)", f"{on.passed_max:.2f} (<= {args.wait:g})", "0.00 (off)"))
    width = max(len(r[0]) for r in rows)
    head = f"{'':{width}}  {'routing on (' + format(args.wait, 'g') + ' s)':>22}  {'routing off':>16}"
    lines = [head] + [f"{a:{width}}  {b:>22}  {c:>16}" for a, b, c in rows]

    p95 = {tier: p(on.waits[tier], 95) for tier in TIER_COUNTS}
    by_weight = sorted(TIER_COUNTS, key=lambda t: DEFAULT_TIERS[t].weight)
    ordered = all(p95[a] + 0.05 >= p95[b] for a, b in itertools.pairwise(by_weight))
    within = all(p95[t] <= p(off.waits[t], 95) + args.wait for t in TIER_COUNTS)
    goals = [
        (f"busy >= 90 %: {100 * on.busy:.1f}", on.busy >= 0.90),
        (f"loads per 100 jobs <= 5: {on.loads_per_100:.2f}", on.loads_per_100 <= 5),
        ("p95 wait falls as the weight rises (free >= standard >= priority)", ordered),
        (f"no tier's p95 wait above its routing-off p95 + the {args.wait:g} s bound", within),
        (f"no job passed over longer than the bound: {on.passed_max:.2f} s", on.passed_max <= args.wait),
    ]
    lines.append("")
    lines += [f"  [{'ok' if met else 'MISSED'}] {text}" for text, met in goals]
    return "\n".join(lines), all(met for _, met in goals)


async def main_async(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    jobs = workload(args)
    folder = Path(tempfile.mkdtemp(prefix="atelier-bench-fleet-"))
    server = EmbeddedRedis(folder)
    server.start()
    redis = Redis(unix_socket_path=server.socket_path)
    try:
        on = await simulate(redis, [Job(**{**j.__dict__}) for j in jobs], args, args.wait)
        off = await simulate(redis, [Job(**{**j.__dict__}) for j in jobs], args, 0.0)
    finally:
        await redis.aclose()
        server.stop()
    models = ", ".join(
        f"{n} {m.s_per_image:g} s/img, load {m.load_s:g} s, {m.gb:g} GB" for n, m in MODELS.items()
    )
    print(
        f"fleet: {args.workers} workers, load {100 * args.load:.0f} %, {args.jobs} jobs from "
        f"{sum(TIER_COUNTS.values())} tenants (seed {args.seed}), budget {args.budget_gb:g} GB per worker\n"
        f"models (H200): {models}\n"
    )
    text, met = table(args, on, off)
    print(text)
    print(
        f"\n(simulated {jobs[-1].arrival / 3600:.2f} h of arrivals in {time.perf_counter() - started:.1f} s)"
    )
    return 0 if met else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--load", type=float, default=0.8, help="offered load, share of the fleet's GPU time")
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument(
        "--wait", type=float, default=DEFAULT_WAIT_S, help="ATELIER_ROUTING_WAIT_S for the routing-on run"
    )
    parser.add_argument("--budget-gb", type=float, default=40.0, help="model memory per worker")
    parser.add_argument("--seed", type=int, default=16)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
