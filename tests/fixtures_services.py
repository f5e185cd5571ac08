"""Session fixtures for the real services tests talk to: an S3 API server (moto) and PostgreSQL databases.

Register them from the top-level conftest (``pytest_plugins = ["tests.fixtures_services"]``) or import the
names. Nothing here is mocked: moto's server speaks the S3 HTTP API on loopback, PostgreSQL is the real one.
``ATELIER_TEST_POSTGRES_URL`` points at another server (default ``postgres://postgres@127.0.0.1:5432/postgres``).
Database names carry a suffix of this run's own, so two runs on one server never drop each other's databases.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from urllib.parse import urlsplit

import asyncpg
import pytest
import pytest_asyncio

POSTGRES_ADMIN_URL = os.environ.get(
    "ATELIER_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"
)
RUN_SUFFIX = f"_{secrets.token_hex(3)}"  # once per run: the databases of a run beside this one are not ours
# A name with the suffix fits PostgreSQL's 63 bytes.
_DATABASE_NAME = re.compile(rf"[a-z][a-z0-9_]{{0,{62 - len(RUN_SUFFIX)}}}")


@pytest.fixture(scope="session")
def moto_s3_endpoint() -> Iterator[str]:
    """Start moto's S3 server on 127.0.0.1 at a free port; yield its endpoint URL, e.g. ``http://127.0.0.1:41234``.

    Any access key works against it; buckets persist for the whole session, so use a bucket per test module
    (or a unique prefix) to stay independent.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres_databases() -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    """A factory ``await create(name) -> url`` that drops and creates this run's database ``name`` (named
    ``name`` plus `RUN_SUFFIX` on the server) and returns its URL.

    Every database it created is dropped at the end of the session. Fails (does not skip) without PostgreSQL.
    """
    created: list[str] = []

    async def create(name: str) -> str:
        if not _DATABASE_NAME.fullmatch(name):
            raise ValueError(
                f"test database name {name!r} must be lowercase letters, digits and '_', at most"
                f" {63 - len(RUN_SUFFIX)} of them"
            )
        name += RUN_SUFFIX
        await _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
        if name not in created:
            created.append(name)
        return _database_url(name)

    yield create
    for name in created:
        await _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def storage_postgres_url(postgres_databases: Callable[[str], Awaitable[str]]) -> str:
    """URL of the empty database ``atelier_test_storage`` (plus the run's suffix), created for this session
    (storage's own tests)."""
    return await postgres_databases("atelier_test_storage")


async def _admin_execute(*statements: str) -> None:
    try:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(
            f"PostgreSQL is needed by these tests and is not reachable at {_without_password(POSTGRES_ADMIN_URL)}"
            f" ({exc}); start it or set ATELIER_TEST_POSTGRES_URL"
        ) from None
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def _database_url(name: str) -> str:
    parts = urlsplit(POSTGRES_ADMIN_URL)
    return parts._replace(scheme="postgres", path=f"/{name}").geturl()


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()
