"""End to end on real processes: an `atelier worker` and `atelier imagine` CLIs on Redis, PostgreSQL and the tiny
model. A tenant whose tier allows relax and whose fast budget is spent runs in the relax lane (the CLI says so);
a fast job submitted meanwhile starts at the relax job's next step boundary; the relax job goes on from the step
it stopped at, and its GPU time is outside the fast budget.

Evidence comes from Redis's own clock: stream entry ids of the jobs' events, and the relax job's step checks
(`jobs.relax.checks`, each stamped with Redis TIME inside the same script that looks for waiting fast jobs)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis import Redis

from jobs.events import stream_key
from jobs.relax import checks_key
from tests.support import atelier_env, run_atelier, stop_process, worker_process

QUEUE = "atelier:queue"
WAIT_S = 600
RELAX_OPTIONS = ("--size", "512x512", "--hires", "1", "--steps", "50", "--count", "4", "--seed", "1")
RELAX_OPTIONS += ("--tenant", "cli:patient")  # bounded waits for events on a loaded two-core machine


def _events(client: Redis, job_id: str) -> list[tuple[int, str, str]]:
    """(Redis time in ms, event, raw data) of the job's stream, in order."""
    import json

    rows = []
    for entry_id, fields in client.xrange(stream_key(job_id)):
        data = json.loads(fields[b"data"])
        rows.append((int(entry_id.decode().split("-")[0]), fields[b"event"].decode(), data))
    return rows


def _checks(client: Redis, job_id: str) -> list[tuple[int, int, str]]:
    rows = []
    for raw in reversed(client.lrange(checks_key(job_id), 0, -1)):
        step, at, *seen = raw.decode().split(" ")
        rows.append((int(step), int(at), seen[0] if seen else ""))
    return rows


def _wait_for(what: str, found, deadline: float, process: subprocess.Popen | None = None):
    while True:
        value = found()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the relax CLI ended first ({process.returncode})")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.parametrize("max_batch", ["1", "4"], ids=["one-job-at-a-time", "batching-worker"])
def test_a_fast_job_preempts_a_relax_job_within_one_step_and_the_relax_job_resumes_uncharged(
    env: dict[str, str], tmp_path: Path, max_batch: str
) -> None:
    env = {**env, "ATELIER_MAX_BATCH": max_batch}
    client = Redis.from_url(env["ATELIER_REDIS_URL"])
    deadline = time.monotonic() + WAIT_S
    with worker_process(env, tmp_path, QUEUE):
        # 4 images of 512² for 50 steps: long enough for the fast CLI to start and submit while it runs
        relax_cli = subprocess.Popen(
            [sys.executable, "-m", "atelier", "imagine", "a slow fox", *RELAX_OPTIONS],
            cwd=tmp_path,
            env=atelier_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            key = _wait_for(
                "the relax job's first step",
                lambda: next(client.scan_iter(match=checks_key("*")), None),
                deadline,
                relax_cli,
            )
            relax_id = key.decode().rsplit(":", 1)[1]
            _wait_for(
                "the relax job's second step",
                lambda: len(_checks(client, relax_id)) >= 2,
                deadline,
                relax_cli,
            )

            fast = run_atelier(
                "imagine",
                "a quick hare",
                "--steps",
                "2",
                "--seed",
                "2",
                "--tenant",
                "discord:77",
                cwd=tmp_path,
                env=env,
            )
            assert fast.returncode == 0, fast.stderr
            assert "relax lane" not in fast.stderr
            fast_id = re.search(r"(j[0-9a-f]{20})-0\.png", fast.stdout)[1]

            out, err = relax_cli.communicate(timeout=max(1, deadline - time.monotonic()))
        finally:
            stop_process(relax_cli)
    assert relax_cli.returncode == 0, err
    assert f"job {relax_id} runs in the relax lane" in err
    assert len(out.split()) == 4 and all((tmp_path / p).exists() for p in out.split())

    fast_events, relax_events = _events(client, fast_id), _events(client, relax_id)
    fast_queued = next(t for t, e, _ in fast_events if e == "queued")
    fast_first_step = next(t for t, e, _ in fast_events if e == "progress")
    [preempted] = [d for _, e, d in relax_events if e == "preempted"]
    assert preempted["by"] == fast_id

    checks = _checks(client, relax_id)
    [giving_way] = [i for i, (_, _, seen) in enumerate(checks) if seen]
    step_at_preemption = checks[giving_way][0]
    assert step_at_preemption == preempted["step"]
    print(f"relax job pre-empted after step {step_at_preemption} of 50 for {fast_id}")
    # The fast job was noted waiting before its `queued` event: the relax job's step then was at most one
    # behind the step it gave way after; no step check after the fast job's arrival missed it.
    step_when_queued = max(step for step, at, _ in checks[:giving_way] if at < fast_queued)
    assert step_at_preemption <= step_when_queued + 1
    assert all(at < fast_queued for _, at, _ in checks[:giving_way])
    # The fast job's first step came after the relax job's check that stopped it (the `preempted` event is
    # published later, once its state is saved) and before the relax job's next step...
    next_step, next_at, _ = checks[giving_way + 1]
    assert checks[giving_way][1] <= fast_first_step < next_at
    # ...which went on from where it stopped, not from the start.
    assert next_step == step_at_preemption + 1
    assert [step for step, _, _ in checks[giving_way + 1 :]] == list(range(step_at_preemption + 1, 50))

    usage = run_atelier("admin", "usage", "cli:patient", "--period", "month", cwd=tmp_path, env=env)
    assert usage.returncode == 0, usage.stderr
    assert "4 images, 0.0 GPU s + " in usage.stdout  # nothing against the fast budget
    assert re.search(r"relax lane: [1-9][0-9.]* GPU s, not charged against the fast budget", usage.stdout)
