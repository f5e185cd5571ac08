"""The fault suite (issue 10): each scenario of `tests.reliability.faults` at CI's size, on the real processes.
`bench/faults.py` runs the same scenarios larger and prints their table."""

from __future__ import annotations

from pathlib import Path

from tests.reliability.faults import (
    FaultStack,
    Outcome,
    flaky_platform,
    postgres_outage,
    redis_restart,
    worker_kills,
)
from tests.reliability.postgres_server import PostgresServer
from tests.reliability.redis_server import RedisServer


async def run(
    scenario, *args, redis: RedisServer, database_url: str, tmp_path: Path, models_dir: Path, **kwargs
):
    """`scenario(stack, *args, **kwargs)` on a fresh stack; the processes' logs are shown when it raises. Every
    job must have been delivered once and charged once."""
    async with FaultStack.open(
        tmp_path, redis_url=redis.url, database_url=database_url, models_dir=models_dir
    ) as stack:
        try:
            outcome: Outcome = await scenario(stack, *args, **kwargs)
        except BaseException:
            print(stack.logs())
            raise
    print(f"\n{outcome.HEADER}\n{outcome.row()}\n" + "\n".join(outcome.notes + outcome.problems))
    assert (outcome.lost, outcome.duplicates, outcome.problems) == (0, 0, [])
    assert outcome.delivered_once == outcome.charged_once == outcome.jobs
    return outcome


async def test_workers_sigkilled_at_every_stage_lose_and_double_nothing(
    redis_server: RedisServer, tmp_path: Path, models_dir: Path, postgres_databases
) -> None:
    database_url = await postgres_databases("atelier_test_faults_kills")
    outcome = await run(
        worker_kills, jobs=20, kills=10, seed=10,
        redis=redis_server, database_url=database_url, tmp_path=tmp_path, models_dir=models_dir,
    )  # fmt: skip
    # Each job a kill hit was delivered within the lease (10 s) plus a run again, on a loaded machine.
    assert outcome.recovery_s and max(outcome.recovery_s) < 90, outcome.recovery_s


async def test_redis_killed_and_restarted_loses_and_doubles_nothing(
    redis_server: RedisServer, tmp_path: Path, models_dir: Path, postgres_databases
) -> None:
    database_url = await postgres_databases("atelier_test_faults_redis")
    await run(
        redis_restart, redis_server, jobs=21,
        redis=redis_server, database_url=database_url, tmp_path=tmp_path, models_dir=models_dir,
    )  # fmt: skip


async def test_postgres_stopped_for_20_s_is_answered_at_once_and_loses_nothing(
    redis_server: RedisServer, tmp_path: Path, models_dir: Path
) -> None:
    postgres = PostgresServer()
    postgres.start()
    try:
        outcome = await run(
            postgres_outage, postgres, outage_s=20, commands=5,
            redis=redis_server, database_url=postgres.url, tmp_path=tmp_path, models_dir=models_dir,
        )  # fmt: skip
    finally:
        postgres.remove()
    assert len(outcome.answers_s) == 5 and max(outcome.answers_s) < 3, outcome.answers_s


async def test_discord_failing_a_third_of_calls_still_gets_every_result_once(
    redis_server: RedisServer, tmp_path: Path, models_dir: Path, postgres_databases
) -> None:
    database_url = await postgres_databases("atelier_test_faults_flaky")
    await run(
        flaky_platform, jobs=12, seed=3,
        redis=redis_server, database_url=database_url, tmp_path=tmp_path, models_dir=models_dir,
    )  # fmt: skip
