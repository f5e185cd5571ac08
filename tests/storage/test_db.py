"""Opening the database and migrating it, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from tortoise.context import TortoiseContext
from tortoise.exceptions import OperationalError
from tortoise.migrations.autodetector import MigrationAutodetector

from storage.db import MAKEMIGRATIONS_CONFIG, close_db, init_db, migrate
from storage.models import Tenant

INITIAL = "0001_initial"


async def test_migrate_applies_all_from_empty_then_nothing(empty_db_url: str) -> None:
    assert (await migrate(empty_db_url))[0] == INITIAL
    assert await migrate(empty_db_url) == []

    await init_db(empty_db_url, migrate=False)
    assert await Tenant.all().count() == 0  # the tables exist: made by the migration, not by init_db


async def test_schema_comes_only_from_migrations(empty_db_url: str) -> None:
    await init_db(empty_db_url, migrate=False)
    with pytest.raises(OperationalError):
        await Tenant.all().count()

    await init_db(empty_db_url)  # migrate=True by default
    assert await Tenant.all().count() == 0
    assert await migrate(empty_db_url) == []


async def test_init_db_creates_the_sqlite_folder(tmp_path: Path) -> None:
    db_file = tmp_path / "a" / "b" / "atelier.db"
    await init_db(f"sqlite://{db_file}")
    try:
        await Tenant.create(platform="cli", external_id="local")
        assert db_file.is_file()
    finally:
        await close_db()


async def test_a_second_init_db_switches_databases(tmp_path: Path) -> None:
    await init_db(f"sqlite://{tmp_path}/one.db")
    await Tenant.create(platform="cli", external_id="local")
    await init_db(f"sqlite://{tmp_path}/two.db")  # closes one.db first
    try:
        assert await Tenant.all().count() == 0
    finally:
        await close_db()
    with pytest.raises(RuntimeError, match="No TortoiseContext"):
        await Tenant.all().count()


async def test_tasks_started_before_init_db_see_the_database(tmp_path: Path) -> None:
    opened = asyncio.Event()

    async def count_tenants() -> int:
        await opened.wait()
        return await Tenant.all().count()

    task = asyncio.create_task(count_tenants())  # its context is copied now, before init_db
    await init_db(f"sqlite://{tmp_path}/atelier.db")
    try:
        await Tenant.create(platform="cli", external_id="local")
        opened.set()
        assert await asyncio.wait_for(task, 5) == 1
    finally:
        await close_db()


async def test_concurrent_migrations_on_postgres_run_once(storage_postgres_url: str) -> None:
    connection = await asyncpg.connect(storage_postgres_url)
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await connection.close()

    results = await asyncio.gather(*(migrate(storage_postgres_url) for _ in range(3)))

    applied = [name for names in results for name in names]
    assert applied.count(INITIAL) == 1
    assert sorted(applied) == sorted(set(applied))


async def test_a_database_from_a_newer_release_is_reported(
    empty_db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await migrate(empty_db_url)
    await init_db(empty_db_url, migrate=False)
    connection = Tenant._meta.db
    placeholders = "$1, $2, $3" if connection.capabilities.dialect == "postgres" else "?, ?, ?"
    await connection.execute_insert(
        f'INSERT INTO "tortoise_migrations" ("app", "name", "applied_at") VALUES ({placeholders})',
        ["models", "9999_from_the_future", datetime.now(UTC)],
    )
    await close_db()

    with caplog.at_level(logging.WARNING, logger="storage.db"):
        assert await migrate(empty_db_url) == []
    assert "9999_from_the_future" in caplog.text


@pytest.mark.parametrize(
    "url", ["", "mysqlx://host/db", "data/atelier.db", "sqlite://", "postgres://host:port/db"]
)
async def test_unusable_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="database URL"):
        await init_db(url)


async def test_the_models_need_no_migration_beyond_the_committed_ones() -> None:
    """Fails when a model changed without a migration: run `tortoise makemigrations` (storage/migrations/README.md)."""
    async with TortoiseContext() as context:
        await context.init(config=MAKEMIGRATIONS_CONFIG)
        assert context.apps is not None
        writers = await MigrationAutodetector(context.apps, MAKEMIGRATIONS_CONFIG["apps"]).changes()
    assert [writer.name for writer in writers] == []
