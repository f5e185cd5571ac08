"""Storage's own fixtures: an empty database per test, on SQLite (a temp file) and on PostgreSQL.

The service fixtures (``storage_postgres_url``, ``moto_s3_endpoint``) live in ``tests/fixtures_services.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from storage.db import close_db


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def empty_db_url(
    request: pytest.FixtureRequest, tmp_path: Path, storage_postgres_url: str
) -> AsyncIterator[str]:
    """A database URL with no tables at all; the SQLite file sits in a folder that does not exist yet."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path}/not-yet/atelier.db"
    else:
        connection = await asyncpg.connect(storage_postgres_url)
        try:
            await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        finally:
            await connection.close()
        yield storage_postgres_url
    await close_db()
