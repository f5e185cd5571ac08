"""Fault scenarios on the real processes, shared by the fault suite (tests/reliability/test_faults.py, at CI's
size) and `bench/faults.py` (larger counts, one table).

A `FaultStack` is the tests' Discord emulator, the real `atelier discord` bot and `atelier worker` processes, on
a Redis and a PostgreSQL database the caller gives (the suite's own servers, so a scenario may stop them). Jobs
are asked for as members ask: `/imagine` interactions on the emulator. What counts is what members would see:

- delivered once: the job's thread got exactly its images, and its row says delivered;
- duplicates: images posted beyond that;
- lost: a job that was never delivered;
- charged once: one reservation and one settlement in the ledger;
- recovery: seconds from a fault to the delivery of the job it hit.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from tests.discord import payloads as p
from tests.discord.emulator import DiscordEmulator, Interaction, Recorded
from tests.discord.helpers import followups, job_id_of
from tests.reliability.postgres_server import PostgresServer
from tests.reliability.redis_server import RedisServer
from tests.support import atelier_env

START_S = 180  # a process importing torch and discord.py on a busy 2-core machine
STAGES = ("queued", "loading", "steps", "posting", "posted")
"""Where a worker is killed: before its job starts, after it started and before its first step, mid-steps, while
Discord receives the result (the post lands, the worker never hears back), just after the result was posted."""


@dataclass
class Outcome:
    """One scenario's figures: a row of bench/faults.py's table."""

    scenario: str
    jobs: int
    delivered_once: int = 0
    duplicates: int = 0
    lost: int = 0
    charged_once: int = 0
    recovery_s: list[float] = field(default_factory=list)
    answers_s: list[float] = field(default_factory=list)  # commands refused during an outage: time to answer
    problems: list[str] = field(
        default_factory=list
    )  # what members would have noticed; empty when all is well
    notes: list[str] = field(default_factory=list)

    HEADER = "| scenario | jobs | delivered once | duplicates | lost | charged once | recovery s p50 / max |"

    def row(self) -> str:
        recovery = (
            f"{statistics.median(self.recovery_s):.1f} / {max(self.recovery_s):.1f}"
            if self.recovery_s
            else "-"
        )
        return (
            f"| {self.scenario} | {self.jobs} | {self.delivered_once} | {self.duplicates} | {self.lost} | "
            f"{self.charged_once} | {recovery} |"
        )


@dataclass
class Process:
    name: str
    proc: asyncio.subprocess.Process
    log: Path

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class FaultStack:
    emulator: DiscordEmulator
    env: dict[str, str]
    workdir: Path
    redis: Redis
    processes: list[Process] = field(default_factory=list)

    @classmethod
    @asynccontextmanager
    async def open(
        cls, workdir: Path, *, redis_url: str, database_url: str, models_dir: Path, **variables: str
    ) -> AsyncIterator[FaultStack]:
        """The emulator and the bot, ready; workers are the scenario's to start."""
        emulator = DiscordEmulator()
        await emulator.start()
        tiers = workdir / "tiers.toml"
        # A tier without limits: a scenario sends a hundred jobs from one server at once.
        tiers.write_text('[tiers.faults]\nweight = 1\n[new_tenants]\ndiscord = "faults"\n')
        env = atelier_env(
            {
                "ATELIER_REDIS_URL": redis_url,
                "ATELIER_DATABASE_URL": database_url,
                "ATELIER_BLOB_URL": str(workdir / "blobs"),
                "ATELIER_DATA_DIR": str(workdir / "data"),
                "ATELIER_TINY_MODELS": "1",
                "ATELIER_MODEL_CACHE_DIR": str(models_dir),
                "ATELIER_QUEUE_NAME": f"atelier:queue:faults-{uuid.uuid4().hex[:8]}",
                "ATELIER_TIERS_FILE": str(tiers),
                "ATELIER_MAX_JOBS": "1",
                "ATELIER_MAX_BATCH": "1",
                "ATELIER_DEVICE": "cpu",
                "ATELIER_DISCORD_TOKEN": emulator.bot_token,
                "ATELIER_DISCORD_API_BASE": emulator.api_base,
                "ATELIER_DISCORD_GATEWAY_URL": emulator.gateway_url,
                "ATELIER_DISCORD_GUILD_IDS": str(emulator.guild_id),
                "ATELIER_LOG_LEVEL": "INFO",
                "OMP_NUM_THREADS": "1",  # workers leave the other core to the bot and the emulator
                "PYTHONUNBUFFERED": "1",
                **variables,
            }
        )
        stack = cls(emulator, env, workdir, Redis.from_url(redis_url))
        try:
            bot = await stack._spawn("bot", "discord")
            await stack._wait(lambda: emulator.bot_ready(), bot, "the bot's ready")
            yield stack
        finally:
            for process in stack.processes:
                if process.alive:
                    process.proc.kill()
                    await process.proc.wait()
            await stack.redis.aclose()
            await emulator.close()

    @property
    def queue(self) -> str:
        return self.env["ATELIER_QUEUE_NAME"]

    async def _spawn(self, name: str, *args: str) -> Process:
        log = self.workdir / f"{name}-{len(self.processes)}.log"
        with log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "atelier", *args, env=self.env, cwd=self.workdir, stdout=out, stderr=out
            )
        process = Process(name, proc, log)
        self.processes.append(process)
        return process

    async def _wait(self, ready: Callable, process: Process, what: str, within: float = START_S) -> None:
        deadline = time.monotonic() + within
        while not await _value(ready()):
            if not process.alive:
                raise RuntimeError(
                    f"{process.name} exited with {process.proc.returncode}:\n{process.text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}:\n{self.logs()}")
            await asyncio.sleep(0.1)

    async def start_worker(self, *, wait: bool = True) -> Process:
        """Start an `atelier worker`; with `wait`, return once its heartbeat is in Redis."""
        before = await self._beating()
        worker = await self._spawn("worker", "worker")
        if wait:
            await self._wait(lambda: self._more_beating(before), worker, "the worker's heartbeat")
        return worker

    async def _beating(self) -> set[bytes]:
        return {k async for k in self.redis.scan_iter(match=f"atelier:worker:{self.queue}:*")}

    async def _more_beating(self, before: set[bytes]) -> bool:
        return bool(await self._beating() - before)

    @property
    def workers(self) -> list[Process]:
        return [p for p in self.processes if p.name == "worker" and p.alive]

    def running(self, job_id: str) -> Process | None:
        """The live worker whose log says it started `job_id` (most recently started first)."""
        for worker in reversed(self.workers):
            if f"{job_id}:" in worker.text():
                return worker
        return None

    def kill(self, worker: Process) -> float:
        """SIGKILL `worker` (what the OOM killer or a lost node does); the time it happened."""
        worker.proc.kill()
        return time.monotonic()

    async def imagine(
        self, prompt: str, *, user: str = "alice", steps: int = 20, size: int = 128
    ) -> Interaction:
        return await self.emulator.slash(
            "imagine",
            {"prompt": f"{prompt} --size {size}x{size} --hires 1 --steps {steps}", "model": "tiny"},
            user=user,
        )

    async def job_row(self, job_id: str) -> dict | None:
        async with self._database() as connection:
            row = await connection.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
        return dict(row) if row else None

    async def running_jobs(self, interactions: list[Interaction]) -> list[str]:
        """The ids of `interactions`' jobs whose row says running."""
        async with self._database() as connection:
            rows = await connection.fetch(
                "SELECT id FROM jobs WHERE id = ANY($1) AND status = 'running'",
                [job_id_of(i) for i in interactions],
            )
        return [r["id"] for r in rows]

    async def admitted(self, interactions: list[Interaction]) -> int:
        """How many of `interactions` have a job row (were admitted)."""
        async with self._database() as connection:
            return await connection.fetchval(
                "SELECT count(*) FROM jobs WHERE id = ANY($1)", [job_id_of(i) for i in interactions]
            )

    @asynccontextmanager
    async def _database(self) -> AsyncIterator[asyncpg.Connection]:
        # A connection per question: the scenario may have stopped the server since the last one.
        url = self.env["ATELIER_DATABASE_URL"].replace("postgres://", "postgresql://", 1)
        connection = await asyncpg.connect(url, timeout=10)
        try:
            yield connection
        finally:
            await connection.close()

    async def settled(self, interactions: list[Interaction], within: float = 300) -> None:
        """Wait until every job is delivered (or has failed) and the queue is empty with no job in progress,
        so that a late duplicate would have been posted by now."""
        ids = [job_id_of(i) for i in interactions]
        deadline = time.monotonic() + within
        while True:
            async with self._database() as connection:
                ended = await connection.fetchval(
                    "SELECT count(*) FROM jobs WHERE id = ANY($1) AND"
                    " (delivered_at IS NOT NULL OR status IN ('failed', 'cancelled'))",
                    ids,
                )
            open_jobs = len(ids) - ended
            busy = await self.redis.zcard(self.queue) + len(
                [k async for k in self.redis.scan_iter(match="arq:in-progress:*")]
            )
            if not open_jobs and not busy:
                return
            if time.monotonic() > deadline:
                return  # what is still open counts as lost
            await asyncio.sleep(0.2)

    async def outcome(
        self, scenario: str, interactions: list[Interaction], faults: dict[str, float], images_each: int = 1
    ) -> Outcome:
        """Count what members saw for `interactions`; `faults` maps a job id to when a fault hit it."""
        result = Outcome(scenario, len(interactions))
        async with self._database() as connection:
            for interaction in interactions:
                job_id = job_id_of(interaction)
                row = await connection.fetchrow("SELECT status, delivered_at FROM jobs WHERE id = $1", job_id)
                posted = self.images_posted(job_id)
                if posted > images_each:
                    result.duplicates += posted - images_each
                    result.problems.append(f"{job_id}: {posted} images posted: {self.posts_of(job_id)}")
                if row is None or row["delivered_at"] is None or posted < images_each:
                    result.lost += 1
                    result.problems.append(
                        f"{job_id}: {dict(row) if row else 'no row'}, {posted} images posted"
                    )
                elif posted == images_each:
                    result.delivered_once += 1
                kinds = await connection.fetch(
                    "SELECT kind FROM quota_ledger WHERE job_id = $1 ORDER BY id", job_id
                )
                if [k["kind"] for k in kinds] == ["reserve", "settle"]:
                    result.charged_once += 1
                else:
                    result.problems.append(f"{job_id}: ledger {[k['kind'] for k in kinds]}")
                if job_id in faults and row is not None and row["delivered_at"] is not None:
                    recovery = row["delivered_at"].timestamp() - faults[job_id]
                    result.recovery_s.append(recovery)
                    result.notes.append(f"{job_id}: delivered {recovery:.1f} s after the fault")
        return result

    def images_posted(self, job_id: str) -> int:
        """Images of `job_id` in any channel (its thread, or next to its status message when it has none)."""
        return sum(
            len(m.attachments)
            for m in list(self.emulator.messages.values())
            if not m.deleted and m.attachments and any(f":{job_id}:" in c for c in m.custom_ids())
        )

    def posts_of(self, job_id: str) -> list[str]:
        """The requests that posted `job_id`'s images: method, path, answer, nonce (to tell a duplicate's cause)."""
        ids = {
            m.id
            for m in list(self.emulator.messages.values())
            if m.attachments and any(f":{job_id}:" in c for c in m.custom_ids())
        }
        return [
            f"{r.method} {r.path} -> {r.status} nonce={(r.payload or {}).get('nonce')} message={r.message_id}"
            for r in self.emulator.requests
            if r.files and (r.message_id in ids or f":{job_id}:" in str(r.payload))
        ]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ({p.log.name}) ---\n{p.text()[-2500:]}" for p in self.processes)


async def _value(value):
    return await value if asyncio.iscoroutine(value) else value


async def worker_kills(stack: FaultStack, *, jobs: int, kills: int, seed: int = 0) -> Outcome:
    """`jobs` /imagine from three members with three workers serving them; `kills` of those jobs each see the
    worker running them SIGKILLed at one of `STAGES` (in turn, on jobs picked at random; at "queued", a worker
    picked at random dies while the job waits, hitting whatever it ran), and a new worker started in the dead
    one's place, as a supervisor would. Recovery is timed for the jobs a kill hit."""
    rng = random.Random(seed)
    targets = sorted(rng.sample(range(jobs), kills))
    plan = {t: STAGES[k % len(STAGES)] for k, t in enumerate(targets)}
    for _ in range(3 - len(stack.workers)):
        await stack.start_worker()
    interactions: list[Interaction] = []
    killed_at: dict[str, float] = {}  # job id -> wall-clock time of the kill
    pending: dict[str, str] = {}  # job id -> stage still to kill it at
    by_thread: dict[int, str] = {}

    def kill_running(job_id: str) -> None:
        worker = stack.running(job_id)
        if worker is not None and job_id in pending:
            stack.kill(worker)
            killed_at[job_id] = time.time()
            print(f"killed {worker.log.name} at {pending.pop(job_id)} of {job_id}")
            asyncio.get_running_loop().create_task(stack.start_worker(wait=False))

    def on_post(phase: str, record: Recorded) -> None:
        # A result post into a job's thread: kill its worker while Discord takes it ("posting"), or right
        # after Discord answered ("posted"); either way the worker never records the delivery.
        if record.method != "POST" or not record.files or not record.path.endswith("/messages"):
            return
        thread = int(record.path.split("/")[2]) if record.path.startswith("/channels/") else None
        job_id = by_thread.get(thread) if thread else None
        if job_id is not None and pending.get(job_id) == {"before": "posting", "after": "posted"}[phase]:
            kill_running(job_id)

    stack.emulator.hooks.append(on_post)
    try:
        for i in range(jobs):
            interaction = await stack.imagine(f"fault {i}", user=("alice", "bob", "carol")[i % 3])
            interactions.append(interaction)
            if i in plan:
                pending[job_id_of(interaction)] = plan[i]
        for interaction in interactions:
            await stack.emulator.wait_response(interaction, within=60)
            if interaction.original_message_id:
                by_thread[interaction.original_message_id] = job_id_of(interaction)
        deadline = time.monotonic() + 300
        while [j for j, stage in pending.items() if stage in ("queued", "loading", "steps")]:
            assert time.monotonic() < deadline, f"kills not done: {pending}\n{stack.logs()}"
            for job_id, stage in list(pending.items()):
                row = await stack.job_row(job_id)
                status = row["status"] if row else None
                if stage == "queued" and status == "queued" and stack.workers:
                    # A worker dies while this job waits: the job it was running, if any, is the one hit.
                    victim = rng.choice(stack.workers)
                    hit = [j for j in await stack.running_jobs(interactions) if stack.running(j) is victim]
                    stack.kill(victim)
                    killed_at.update(dict.fromkeys(hit, time.time()))
                    print(f"killed {victim.log.name} while {pending.pop(job_id)} waited, hitting {hit}")
                    asyncio.get_running_loop().create_task(stack.start_worker(wait=False))
                elif stage in ("loading", "steps") and status == "running":
                    stepped = await stack.redis.xrange(f"atelier:events:{job_id}")
                    progressed = any(f.get(b"event") == b"progress" for _, f in stepped)
                    if stage == "steps" and not progressed:
                        continue
                    kill_running(job_id)
                elif status in ("succeeded", "failed") or (row and row["delivered_at"]):
                    pending[job_id] = "missed"  # it ran too quickly to be caught at that stage
            await asyncio.sleep(0.05)
        await stack.settled(interactions)
    finally:
        stack.emulator.hooks.remove(on_post)
    outcome = await stack.outcome("worker SIGKILLed", interactions, killed_at)
    missed = [j for j, s in pending.items() if s == "missed"]
    outcome.notes.append(
        f"{kills - len(missed)} kills at {sorted(set(plan.values()))} hit {len(killed_at)} jobs; {len(missed)} missed"
    )
    return outcome


async def postgres_outage(
    stack: FaultStack, postgres: PostgresServer, *, outage_s: float = 20, commands: int = 5
) -> Outcome:
    """PostgreSQL stopped for `outage_s` while one job runs and one waits. `commands` /imagine sent during the
    outage are each answered, inside Discord's 3 s, with a message to try again, and leave no job behind; after
    PostgreSQL is back the two jobs and a new one are delivered once. The row's "jobs" are those three."""
    if not stack.workers:
        await stack.start_worker()
    before = [await stack.imagine("before the outage", steps=50), await stack.imagine("waiting", user="bob")]
    running = job_id_of(before[0])
    deadline = time.monotonic() + 120
    while not any(
        f.get(b"event") == b"progress" for _, f in await stack.redis.xrange(f"atelier:events:{running}")
    ):
        assert time.monotonic() < deadline, stack.logs()
        await asyncio.sleep(0.05)
    postgres.stop()
    stopped_at = time.time()
    refused: list[Interaction] = []
    for i in range(commands):
        interaction = await stack.imagine(f"during the outage {i}", user="carol")
        refused.append(interaction)
        await stack.emulator.wait_until(lambda i=interaction: followups(stack.emulator, i), 30, "an answer")
        await asyncio.sleep(max(0.0, stopped_at + (i + 1) * outage_s / commands - time.time()))
    postgres.start()
    after = [await stack.imagine("after the outage")]
    await stack.settled(before + after)
    outcome = await stack.outcome(
        f"PostgreSQL stopped {outage_s:.0f} s", before + after, {job_id_of(i): stopped_at for i in before}
    )
    for interaction in refused:
        answer = followups(stack.emulator, interaction)[0]
        answered_s = answer.created_at - interaction.dispatched_at
        outcome.answers_s.append(answered_s)
        if "Try again" not in answer.content or answered_s >= 3:
            outcome.problems.append(f"answered {answered_s:.1f} s after the command: {answer.content!r}")
        if await stack.job_row(job_id_of(interaction)) is not None:
            outcome.problems.append(f"{job_id_of(interaction)} was recorded during the outage")
    return outcome


FLAKY_SPARED = r"/callback$|^GET /users/@me$|/commands$|/gateway"
"""What a flaky Discord still answers: the interaction callbacks (the acknowledgement, without which Discord
shows "interaction failed" whatever the bot does) and the bot's start-up calls."""


async def flaky_platform(stack: FaultStack, *, jobs: int, fraction: float = 1 / 3, seed: int = 0) -> Outcome:
    """`jobs` /imagine while Discord answers `fraction` of the bot's and the workers' calls with a 500, a 503
    after doing what was asked, or a 429 (see `DiscordEmulator.flaky`): every result delivered, none twice."""
    for _ in range(2 - len(stack.workers)):
        await stack.start_worker()
    flakiness = stack.emulator.flaky(fraction, spare=FLAKY_SPARED, seed=seed)
    try:
        interactions = [
            await stack.imagine(f"flaky {i}", user=("alice", "bob", "carol")[i % 3], steps=4)
            for i in range(jobs)
        ]
        for interaction in interactions:
            await stack.emulator.wait_response(interaction, within=60)
        await stack.settled(interactions)
    finally:
        stack.emulator.flaky(0, spare="")
    outcome = await stack.outcome(f"Discord failing {fraction:.0%} of calls", interactions, {})
    outcome.notes.append(f"errors answered: {flakiness.served}")
    return outcome


AOF_FSYNC_S = 1.0
"""Redis's append-only file is written to disk every second (`appendfsync everysec`, the default and compose's):
a job admitted in the last second before Redis dies can be lost from the queue while its row says queued. The
scenario lets that second pass; the README's table says so."""


async def redis_restart(stack: FaultStack, redis_server: RedisServer, *, jobs: int) -> Outcome:
    """Redis SIGKILLed and started again on its append-only file while one job runs and `jobs - 1` wait (from
    ten members): every job delivered once, charged once, and the bot and workers reconnect by themselves."""
    for _ in range(2 - len(stack.workers)):
        await stack.start_worker()
    members = [f"member{i}" for i in range(10)]
    for name in members:
        stack.emulator.users.setdefault(name, p.user(p.mint(), name))
    interactions = [await stack.imagine("running when Redis dies", steps=50, size=384)]
    running = job_id_of(interactions[0])
    interactions += [
        await stack.imagine(f"queued {i}", user=members[i % 10], steps=4) for i in range(jobs - 1)
    ]
    for interaction in interactions:
        await stack.emulator.wait_response(interaction, within=60)
    deadline = time.monotonic() + 120  # the long job runs and every job was admitted
    while True:
        row = await stack.job_row(running)
        if row and row["status"] == "running" and await stack.admitted(interactions) == len(interactions):
            break
        assert time.monotonic() < deadline, stack.logs()
        await asyncio.sleep(0.1)
    await asyncio.sleep(AOF_FSYNC_S + 0.5)
    redis_server.stop()
    stopped_at = time.time()
    redis_server.start()
    await stack.settled(interactions)
    outcome = await stack.outcome("Redis SIGKILLed and restarted", interactions, {running: stopped_at})
    for process in stack.processes:
        if not process.alive:
            outcome.problems.append(f"{process.name} ({process.log.name}) exited: {process.proc.returncode}")
    return outcome
