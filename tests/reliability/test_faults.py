"""The fault suite (issue 10): each scenario of `tests.reliability.faults` at CI's size, on the real processes.
`bench/faults.py` runs the same scenarios larger and prints their table."""

from __future__ import annotations

from pathlib import Path

from tests.reliability.faults import FaultStack, flaky_platform, postgres_outage, redis_restart, worker_kills
from tests.reliability.postgres_server import PostgresServer
from tests.reliability.redis_server import RedisServer


def assert_all_once(outcome) -> None:
    print(f"\n{outcome.HEADER}\n{outcome.row()}\n" + "\n".join(outcome.notes + outcome.problems))
    assert (outcome.lost, outcome.duplicates, outcome.problems) == (0, 0, [])
    assert outcome.delivered_once == outcome.charged_once == outcome.jobs


async def test_workers_sigkilled_at_every_stage_lose_and_double_nothing(
    redis_server: RedisServer, tmp_path: Path, models_dir: Path, postgres_databases
) -> None:
    database = await postgres_databases("atelier_test_faults_kills")
    async with FaultStack.open(
        tmp_path, redis_url=redis_server.url, database_url=database, models_dir=models_dir
    ) as stack:
        try:
            outcome = await worker_kills(stack, jobs=20, kills=10, seed=10)
        except BaseException:
            print(stack.logs())
            raise
        assert_all_once(outcome)
        # Each killed job was delivered within the lease (10 s) plus a run on a loaded machine.
        assert max(outcome.recovery_s) < 90, outcome.recovery_s


async def test_postgres_stopped_for_20_s_is_answered_at_once_and_loses_nothing(
    redis_server: RedisServer, tmp_path: Path, models_dir: Path
) -> None:
    postgres = PostgresServer()
    postgres.start()
    try:
        async with FaultStack.open(
            tmp_path, redis_url=redis_server.url, database_url=postgres.url, models_dir=models_dir
        ) as stack:
            try:
                outcome = await postgres_outage(stack, postgres, outage_s=20, commands=5)
            except BaseException:
                print(stack.logs())
                raise
            assert len(outcome.answers_s) == 5 and max(outcome.answers_s) < 3, outcome.problems
            assert_all_once(outcome)
    finally:
        postgres.remove()


async def test_discord_failing_a_third_of_calls_still_gets_every_result_once(
    redis_server: RedisServer, tmp_path: Path, models_dir: Path, postgres_databases
) -> None:
    database = await postgres_databases("atelier_test_faults_flaky")
    async with FaultStack.open(
        tmp_path, redis_url=redis_server.url, database_url=database, models_dir=models_dir
    ) as stack:
        try:
            outcome = await flaky_platform(stack, jobs=12, seed=3)
        except BaseException:
            print(stack.logs())
            raise
        assert_all_once(outcome)


async def test_redis_killed_and_restarted_loses_and_doubles_nothing(
    redis_server: RedisServer, tmp_path: Path, models_dir: Path, postgres_databases
) -> None:
    database = await postgres_databases("atelier_test_faults_redis")
    async with FaultStack.open(
        tmp_path, redis_url=redis_server.url, database_url=database, models_dir=models_dir
    ) as stack:
        try:
            outcome = await redis_restart(stack, redis_server, jobs=21)
        except BaseException:
            print(stack.logs())
            raise
        assert_all_once(outcome)
