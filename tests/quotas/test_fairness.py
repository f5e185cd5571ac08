"""Fair scheduling with one worker: a newcomer is not starved by a batch, a paid tier goes first without starving
the free one, a job keeps its place when enqueued again, and queue position and ETA follow the fair order."""

from __future__ import annotations

from jobs.queue import enqueue
from jobs.queue_status import queue_position, queue_status
from jobs.specs import imagine_spec
from storage.models import Job
from tests.quotas.conftest import CLI

ROOMY = {
    "queued_jobs_per_user": 100,
    "concurrent_jobs": 100,
    "images_per_day": 1000,
    "images_per_user_per_day": 1000,
}


async def _start_order(job_ids: dict[str, str]) -> str:
    """One letter per job, in the order the worker started them (job_ids: job id -> letter)."""
    jobs = await Job.filter(id__in=list(job_ids)).order_by("started_at", "id").values_list("id", "started_at")
    assert all(started is not None for _, started in jobs)
    return "".join(job_ids[job_id] for job_id, _ in jobs)


async def test_a_newcomer_is_not_starved_by_a_batch_enqueued_before_it(
    runtime, admin, imagine, run_worker
) -> None:
    for tenant in ("discord:A", "discord:B"):
        await admin.set_limits(tenant, **ROOMY)
    letters = {}
    for i in range(50):
        letters[(await imagine("discord:A", "a", f"a{i}")).job_id] = "A"
    b_jobs = [(await imagine("discord:B", "b", f"b{i}")).job_id for i in range(5)]
    letters |= dict.fromkeys(b_jobs, "B")

    position, eta = await queue_position(runtime.redis, runtime.settings.queue_name, b_jobs[0])
    assert position is not None and position <= 3 and eta is not None and eta > 0
    assert (await queue_position(runtime.redis, runtime.settings.queue_name, b_jobs[-1]))[0] <= 11

    await run_worker()
    order = await _start_order(letters)
    print(f"\nfairness, 50 of A then 5 of B, start order: {order}")
    # All of B's jobs start (and, one at a time, finish) before A's 15th.
    assert order.count("B") == 5
    fifteenth_a = [i for i, c in enumerate(order) if c == "A"][14]
    assert order.rindex("B") < fifteenth_a, order


async def test_a_priority_job_goes_ahead_without_starving_the_free_tier(
    runtime, admin, imagine, run_worker
) -> None:
    await admin.set_limits("discord:free", **ROOMY)
    await admin.set_tier("slack:paid", "priority")
    await admin.set_limits("slack:paid", **ROOMY)
    letters = {}
    for i in range(12):
        letters[(await imagine("discord:free", "f", f"f{i}")).job_id] = "f"
    for i in range(12):
        letters[(await imagine("slack:paid", "p", f"p{i}")).job_id] = "P"
    lines = await queue_status(runtime.redis, runtime.settings.queue_name)
    assert [(x.tier, x.model, x.queued, x.running) for x in lines] == [
        ("free", "tiny", 12, 0),
        ("priority", "tiny", 12, 0),
    ]

    await run_worker()
    order = await _start_order(letters)
    print(f"\npriority (P, weight 4) enqueued after free (f, weight 1), start order: {order}")
    # The first paid job, enqueued after all the free ones, starts by the second turn...
    assert order.index("P") <= 1, order
    # ...and while paid jobs wait, the free tier still gets about one turn in five: never starved.
    paid_span = order[: order.rindex("P") + 1]
    assert paid_span.count("f") >= 3, order
    assert max(len(run) for run in paid_span.split("f")) <= 5, order


async def test_a_job_enqueued_again_keeps_its_place(runtime, admin, imagine) -> None:
    await admin.set_limits("discord:A", **ROOMY)
    queue = runtime.settings.queue_name
    first = await imagine("discord:A", "a", "req-1")
    score = await runtime.redis.zscore(queue, first.job_id)
    for i in range(5):
        await imagine("discord:B", f"b{i}", f"other-{i}")
    # A crash between the database insert and arq's enqueue loses the arq job: the request comes again.
    await runtime.redis.delete(f"arq:job:{first.job_id}")
    await runtime.redis.zrem(queue, first.job_id)
    again = await imagine("discord:A", "a", "req-1")
    assert again.job_id == first.job_id and not again.created
    assert await runtime.redis.zscore(queue, first.job_id) == score
    assert await Job.filter(id=first.job_id).count() == 1


async def test_fair_scores_lie_in_the_past_with_an_explicit_expiry(runtime, imagine) -> None:
    queued = await imagine("discord:A", "a", "req-x")
    score = await runtime.redis.zscore(runtime.settings.queue_name, queued.job_id)
    ttl_ms = await runtime.redis.pttl(f"arq:job:{queued.job_id}")
    assert 0 < score < 10**12  # virtual time: an instant in 1970, always runnable
    assert 23 * 3600 * 1000 < ttl_ms <= 24 * 3600 * 1000


async def test_an_unmetered_job_is_fair_shared_too(runtime) -> None:
    spec = imagine_spec(runtime.registry, prompt="x", tiny=True, steps=1)
    queued = await enqueue(
        runtime.redis, spec, request_id="internal", reply_target=CLI, queue_name=runtime.settings.queue_name
    )
    assert queued.position == 1 and queued.eta_s is not None
    assert (await runtime.redis.zscore(runtime.settings.queue_name, queued.job_id)) < 10**12
