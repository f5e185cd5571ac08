"""Cancel: a queued job never runs and is refunded; a running one stops within one step and is refunded."""

from __future__ import annotations

import asyncio

import pytest

from jobs import events
from quotas.ledger import audit
from storage.models import Job, JobStatus, get_or_create_tenant, get_or_create_user
from storage.quota_models import LedgerKind, QuotaLedger, QuotaReservation, ReservationState


async def test_a_cancelled_queued_job_never_runs_and_is_refunded(runtime, admin, imagine, run_worker) -> None:
    kept = await imagine("discord:7", "1", "keep")
    dropped = await imagine("discord:7", "2", "drop")
    tenant = await get_or_create_tenant("discord", "7")
    owner = await get_or_create_user(tenant, "2")
    stranger = await get_or_create_user(tenant, "1")

    with pytest.raises(PermissionError, match="only the person who asked"):
        await admin.cancel_job(dropped.job_id, by_user=stranger)
    outcome = await admin.cancel_job(dropped.job_id, by_user=owner)
    assert outcome.outcome == "cancelled"
    reservation = await QuotaReservation.get(job_id=dropped.job_id)
    assert reservation.state == ReservationState.REFUNDED  # at once, before any worker sees it
    await run_worker()

    job = await Job.get(id=dropped.job_id)
    assert job.status == JobStatus.CANCELLED and job.started_at is None and job.attempts == 0
    assert (await Job.get(id=kept.job_id)).status == JobStatus.SUCCEEDED
    ledger = await QuotaLedger.filter(job_id=dropped.job_id).order_by("id").values_list("kind", "images")
    assert ledger == [(LedgerKind.RESERVE, 1), (LedgerKind.REFUND, -1)]
    # The worker told the job's followers (and its platform) that it was cancelled.
    seen = [(e, d) async for e, d in events.follow(runtime.redis, dropped.job_id, block_ms=10)]
    assert seen[-1] == ("failed", {"message": "Cancelled by its owner."})
    assert await audit(tenant) == []
    assert (await admin.cancel_job(dropped.job_id, as_admin=True)).outcome == "finished"


async def test_a_cancelled_running_job_stops_within_one_step_and_is_refunded(
    runtime, admin, imagine, run_worker
) -> None:
    # Large enough that one step is long next to the time a cancel takes to reach the GPU thread.
    queued = await imagine("slack:T1", "U1", "long", size="512x512", hires=1, steps=50)
    worker = asyncio.create_task(run_worker())
    seen_step = 0
    async for event, data in events.follow(runtime.redis, queued.job_id, block_ms=50):
        if event == "progress" and data["step"] >= 2:
            seen_step = data["step"]
            outcome = await admin.cancel_job(queued.job_id, as_admin=True)
            assert outcome.outcome == "stopping"
            break
    await asyncio.wait_for(worker, 120)

    job = await Job.get(id=queued.job_id)
    assert job.status == JobStatus.CANCELLED, job.error
    stopped = int(job.error.split("after step ")[1].split(" ")[0])
    print(f"\ncancel seen at step {seen_step}; the job stopped after step {stopped} of 50")
    assert seen_step <= stopped <= seen_step + 1, job.error
    kinds = await QuotaLedger.filter(job_id=queued.job_id).values_list("kind", flat=True)
    assert sorted(kinds) == [LedgerKind.REFUND, LedgerKind.RESERVE]
    assert await audit(await get_or_create_tenant("slack", "T1")) == []
