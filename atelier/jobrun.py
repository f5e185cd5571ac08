"""Run one job for a command at the terminal: enqueue it, follow it to the end, and make sure some worker serves
it meanwhile (one in this process, for this job only, when no worker's heartbeat is seen)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path

from atelier.cli import CLI_USER


async def run_and_wait(
    runtime,
    spec,
    out_dir: Path,
    tenant_ref: tuple[str, str] = ("cli", "local"),
    user_id: str = CLI_USER,
    lane: str | None = None,
    finish: Callable[[Path], None] | None = None,
) -> int:
    """Enqueue `spec` for the tenant and person, follow it to the end and print the files it made. `lane`:
    `fast`, `relax` or `auto` (jobs.relax); None: the person's default (`atelier lane`, or /settings in a chat),
    else `auto`. A job admitted in the relax lane says so on stderr, with its ETA. `finish`, when given, sees
    each file before its path is printed (`atelier replay` compares it with the original)."""
    from jobs import prompt_check
    from jobs.heartbeat import live_workers
    from jobs.queue import enqueue
    from jobs.replier import relay
    from jobs.specs import ReplyTarget
    from jobs.terminal import TerminalReplier
    from jobs.worker import create_worker
    from storage.models import Job, get_or_create_tenant, get_or_create_user
    from storage.settings import settings_for

    settings = runtime.settings
    if await live_workers(runtime.redis, settings.queue_name) == 0:
        prompt_check.check_here()  # no worker would answer the prompt check: this process runs the job anyway
    tenant = await get_or_create_tenant(*tenant_ref)
    if lane is None:
        member = await settings_for(*tenant_ref, user_id)
        lane = (member.lane if member else "") or "auto"
    queued = await enqueue(
        runtime.redis,
        spec,
        request_id=f"cli:{uuid.uuid4()}",
        reply_target=ReplyTarget(platform="cli"),
        queue_name=settings.queue_name,
        tenant=tenant,
        user=await get_or_create_user(tenant, user_id),
        tiers=settings.load_tiers(),
        lane=lane,
    )
    if queued.lane == "relax":
        eta = "" if queued.eta_s is None else f"; done in about {queued.eta_s:.0f} s at the measured pace"
        print(
            f"atelier: job {queued.job_id} runs in the relax lane: only while no fast job waits, giving way to "
            f"any that arrives, and not charged against the fast budget{eta}",
            file=sys.stderr,
        )

    def local_worker():
        return create_worker(
            runtime.worker_services(),
            queue_name=settings.queue_name,
            poll_delay=settings.poll_delay,
            job_timeout=settings.job_timeout,
            max_tries=settings.max_tries,
            handle_signals=False,
            only_jobs={queued.job_id},
        )

    terminal = TerminalReplier(runtime.blobs, out_dir)
    job = await Job.get(id=queued.job_id)
    await while_serving(runtime, settings.queue_name, local_worker, relay(runtime.redis, job, terminal))
    if terminal.error is not None:
        print(f"atelier: job {queued.job_id} failed: {terminal.error}", file=sys.stderr)
        return 1
    for path in terminal.paths:
        if finish is not None:
            finish(path)
        print(path)
    job = await Job.get(id=queued.job_id)
    for prompt in job.spec.get("prompts", []) if job.kind == "describe" else []:
        print(prompt)  # /describe makes prompts, not images (jobs.describe)
    return 0


async def while_serving(runtime, queue_name: str, local_worker, waiting: Coroutine) -> None:
    """Await `waiting` (following a job) while making sure some worker serves `queue_name`: whenever no worker's
    heartbeat is seen, `local_worker()` (a worker for this command's own job only, see jobs.worker's
    `OwnJobsWorker`) runs here until that job has run. Checking again every heartbeat period covers a worker
    that dies, or a stale heartbeat, while we wait."""
    from jobs.heartbeat import HEARTBEAT_TTL_S, live_workers

    workers: list = []

    async def serve_if_unserved(serving: asyncio.Task | None) -> asyncio.Task | None:
        if (serving is None or serving.done()) and await live_workers(runtime.redis, queue_name) == 0:
            workers.append(local_worker())
            return asyncio.create_task(workers[-1].async_run())
        return serving

    # The first check comes before following starts: building a worker imports torch, which blocks the loop
    # for seconds, and a follower connecting to Redis meanwhile would time out.
    serving = await serve_if_unserved(None)
    follower = asyncio.ensure_future(waiting)
    try:
        while not follower.done():
            await asyncio.wait({follower}, timeout=HEARTBEAT_TTL_S)
            if not follower.done():
                serving = await serve_if_unserved(serving)
        await follower
    finally:
        follower.cancel()
        if serving is not None:
            # Our job is done. A local worker that took it is finishing it (arq removes it from the queue
            # after the result is out): wait for that. One that never took it (a real worker did) would wait
            # for it forever: stop it.
            if not serving.done() and not workers[-1].started_any():
                import signal

                workers[-1].handle_sig(signal.SIGTERM)
            with contextlib.suppress(asyncio.CancelledError):
                await serving
