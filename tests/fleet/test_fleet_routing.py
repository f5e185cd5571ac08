"""Three real `atelier worker` processes on one queue and two tiny models: each job goes to the worker that has
its model resident; a job whose only holder is busy starts on another worker once the routing wait is over (not
before, not much after); a job for a model nobody holds starts at once.

Real Redis (DB 41, a queue of this test's own), real PostgreSQL, the `atelier imagine` CLI as the front-end; each
worker's torch runs on one thread. Which worker ran a job is read from its log (arq logs `<job id>:imagine`);
when a job was queued and started, from its event stream (Redis stream ids are milliseconds).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest_asyncio
from redis import Redis

from jobs.heartbeat import heartbeat_key
from jobs.routing import model_key, passed_key
from tests.support import WORKER_START_S, atelier_env, redis_url, service_env, start_worker, stop_process

REDIS_URL = redis_url(41)
WAIT_S = 3.0
JOB_ID = re.compile(r"(j[0-9a-f]{20}):imagine")


@pytest_asyncio.fixture(loop_scope="session")
async def env(tmp_path: Path, models_dir: Path, postgres_databases) -> dict[str, str]:
    Redis.from_url(REDIS_URL).flushdb()
    return atelier_env(
        {
            **service_env(
                tmp_path,
                models_dir=models_dir,
                redis_url=REDIS_URL,
                database_url=await postgres_databases("atelier_test_fleet"),
                queue_name=f"atelier:queue:fleet-{uuid.uuid4().hex[:8]}",
            ),
            "ATELIER_ROUTING_WAIT_S": str(WAIT_S),
            "ATELIER_DEVICE": "cpu",
            "ATELIER_MAX_BATCH": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )


class Fleet:
    def __init__(self, env: dict[str, str], root: Path) -> None:
        self.env, self.root = env, root
        self.queue = env["ATELIER_QUEUE_NAME"]
        self.redis = Redis.from_url(REDIS_URL)
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start_worker(self) -> int:
        """Start one more worker, wait for its heartbeat, and return its index."""
        log = self.root / f"worker{len(self.procs)}.log"
        with log.open("w") as out:
            self.procs.append((start_worker(cwd=self.root, env=self.env, stdout=out), log))
        deadline = time.monotonic() + WORKER_START_S
        while len(list(self.redis.scan_iter(match=heartbeat_key(self.queue, "*")))) < len(self.procs):
            assert time.monotonic() < deadline and self.procs[-1][0].poll() is None, self.logs()
            time.sleep(0.1)
        return len(self.procs) - 1

    def imagine(self, model: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "atelier", "imagine", "a fox", "--model", model, "--seed", "1", *args],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self, *clis: subprocess.Popen) -> None:
        for cli in clis:
            _, stderr = cli.communicate(timeout=180)
            assert cli.returncode == 0, stderr[-3000:] + self.logs()

    def ran(self) -> dict[str, int]:
        """Job id -> index of the worker whose log says it started the job."""
        return {
            job_id: i for i, (_, log) in enumerate(self.procs) for job_id in JOB_ID.findall(log.read_text())
        }

    def model(self, job_id: str) -> str:
        return self.redis.get(model_key(job_id)).decode()

    def wait_started(self, model: str, before: set[str], within: float = 120) -> str:
        """The id of the first job for `model` not in `before` that a worker has started."""
        deadline = time.monotonic() + within
        while True:
            new = [j for j in self.ran() if j not in before and self.model(j) == model]
            if new:
                return new[0]
            assert time.monotonic() < deadline, self.logs()
            time.sleep(0.05)

    def start_delay(self, job_id: str) -> float:
        """Seconds from the job's `queued` event to its first progress event."""
        events = self.redis.xrange(f"atelier:events:{job_id}")
        queued = next(i for i, f in events if f[b"event"] == b"queued")
        started = next(i for i, f in events if f[b"event"] == b"progress")
        ms = lambda stream_id: int(stream_id.split(b"-")[0])  # noqa: E731
        return (ms(started) - ms(queued)) / 1000

    def holds(self, index: int) -> set[str]:
        """The models worker `index` advertises as resident."""
        for key in self.redis.scan_iter(match=heartbeat_key(self.queue, "*")):
            advert = json.loads(self.redis.get(key) or "{}")
            if advert.get("pid") == self.procs[index][0].pid:
                return set(advert["resident"])
        return set()

    def logs(self) -> str:
        return "\n".join(f"--- {log.name} ---\n{log.read_text()[-3000:]}" for _, log in self.procs)

    def stop(self) -> None:
        for proc, _ in self.procs:
            stop_process(proc)
        self.redis.close()


def test_jobs_go_to_the_worker_holding_their_model_and_others_wait_no_longer_than_the_bound(
    env: dict[str, str], tmp_path: Path
) -> None:
    fleet = Fleet(env, tmp_path)
    try:
        # Worker 0 comes first and loads `tiny`.
        sd = fleet.start_worker()
        fleet.finish(fleet.imagine("tiny", "--steps", "2"))
        # Worker 1 joins; while worker 0 runs a long `tiny` job (it holds the model, so it gets it), a
        # `tiny-sdxl` job, which nobody holds, starts at once on the idle worker 1.
        xl = fleet.start_worker()
        warm = set(fleet.ran())
        long_job = fleet.imagine("tiny", "--steps", "50", "--size", "512x512", "--hires", "1", "--count", "4")
        fleet.wait_started("tiny", warm)
        seen = set(fleet.ran())
        fleet.finish(fleet.imagine("tiny-sdxl", "--steps", "2"))
        first_xl = fleet.wait_started("tiny-sdxl", seen)
        assert fleet.ran()[first_xl] == xl, fleet.logs()
        assert fleet.start_delay(first_xl) < WAIT_S  # nobody held it: no wait
        fleet.finish(long_job)
        assert [fleet.ran()[j] for j in seen] == [sd] * len(seen)
        # Worker 2 joins holding nothing. Rounds of one job per model at once: each goes to its holder.
        idle = fleet.start_worker()
        assert "tiny" in fleet.holds(sd) - fleet.holds(xl) and "tiny-sdxl" in fleet.holds(xl) - fleet.holds(
            sd
        )
        assert fleet.holds(idle) == set()
        before = set(fleet.ran())
        for _ in range(3):
            fleet.finish(fleet.imagine("tiny", "--steps", "2"), fleet.imagine("tiny-sdxl", "--steps", "2"))
        routed = {j: i for j, i in fleet.ran().items() if j not in before}
        assert len(routed) == 6
        assert routed == {j: (sd if fleet.model(j) == "tiny" else xl) for j in routed}, fleet.logs()

        # The holder of `tiny` is busy with a long job: a short `tiny` job waits for it for the routing wait,
        # then an idle worker takes it (and loads `tiny`): nothing starves behind a busy holder.
        before = set(fleet.ran())
        long_job = fleet.imagine("tiny", "--steps", "50", "--size", "512x512", "--hires", "1", "--count", "4")
        long_id = fleet.wait_started("tiny", before)
        assert fleet.ran()[long_id] == sd
        short = fleet.imagine("tiny", "--steps", "2")
        short_id = fleet.wait_started("tiny", before | {long_id})
        assert long_job.poll() is None, "the long job ended before the bound could be seen: make it longer"
        fleet.finish(short)
        assert fleet.ran()[short_id] in (xl, idle)
        assert fleet.redis.exists(passed_key(short_id))  # it was passed over, and the wait counted from then
        delay = fleet.start_delay(short_id)
        assert WAIT_S - 0.5 <= delay <= WAIT_S + 5, delay
        print(
            f"\nnobody held tiny-sdxl: started {fleet.start_delay(first_xl):.2f} s after queueing; tiny's holder "
            f"busy: started on another worker {delay:.2f} s after queueing (routing wait {WAIT_S:g} s)"
        )
        fleet.finish(long_job)
    finally:
        fleet.stop()
