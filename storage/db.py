"""Connect tortoise-orm to the database and bring its schema up to date with tortoise's built-in migrations.

One database per process: ``init_db`` opens it as tortoise's process-wide context (visible from every task,
not only the one that called it), ``close_db`` closes it. The schema comes only from the migration files in
``storage/migrations`` (never ``generate_schemas``), so upgrading a deployment is ``atelier migrate``.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.context import TortoiseContext
from tortoise.exceptions import ConfigurationError
from tortoise.migrations.executor import MigrationExecutor

log = logging.getLogger(__name__)

APP_LABEL = "models"
MODELS_MODULE = "storage.models"
MIGRATIONS_MODULE = "storage.migrations"
CONNECTION_NAME = "default"

# Any constant works: it names the lock that serialises migrations across processes on one PostgreSQL.
_PG_MIGRATION_LOCK_KEY = 0x4154454C  # "ATEL"


def tortoise_config(url: str) -> dict[str, Any]:
    """The tortoise config for Atelier's one app (label ``models``) on the database at ``url``."""
    return {"connections": {CONNECTION_NAME: url}, "apps": _apps_config()}


def _apps_config() -> dict[str, dict[str, Any]]:
    app = {"models": [MODELS_MODULE], "migrations": MIGRATIONS_MODULE, "default_connection": CONNECTION_NAME}
    return {APP_LABEL: app}


# For the tortoise CLI, which needs the models but no real database to write a migration:
#   .venv/bin/tortoise -c storage.db.MAKEMIGRATIONS_CONFIG makemigrations -n what_changed
MAKEMIGRATIONS_CONFIG = tortoise_config("sqlite://:memory:")


class _Database:
    """The context ``init_db`` opened; kept here so ``close_db`` closes exactly that one."""

    context: TortoiseContext | None = None


async def init_db(url: str, *, migrate: bool = True) -> None:
    """Open the database at ``url`` for this process and, unless ``migrate`` is false, apply pending migrations.

    Calling it again closes the previous database first. A SQLite file's folder is created if missing.
    """
    await close_db()
    config = _prepare(url)
    context = TortoiseContext()
    # Current only while it initialises; afterwards the global fallback makes it visible to every task,
    # not only to tasks started from this one (arq's on_startup, discord.py's setup_hook, test fixtures).
    with context:
        await context.init(config=config, _enable_global_fallback=True)
        _Database.context = context
        if migrate:
            try:
                await _apply_pending(context.db(CONNECTION_NAME))
            except BaseException:
                await close_db()
                raise


async def close_db() -> None:
    """Close the database ``init_db`` opened; does nothing if none is open."""
    context, _Database.context = _Database.context, None
    if context is not None:
        await context.close_connections()


async def ping(timeout_s: float = 3.0) -> None:
    """Raise unless the database ``init_db`` opened answers a trivial query within ``timeout_s`` (health checks)."""
    context = _Database.context
    if context is None:
        raise RuntimeError("no database is open")
    async with asyncio.timeout(timeout_s):
        await context.db(CONNECTION_NAME).execute_query("SELECT 1")


async def answers(timeout_s: float = 1.0) -> bool:
    """Whether the database answers a trivial query within `timeout_s` now: what a failed request checks to
    tell an outage (say "try again") from a bug (say "something went wrong"). With no database open it raises
    RuntimeError, as `ping` does: that is a mistake in the caller, not an outage."""
    if _Database.context is None:
        raise RuntimeError("no database is open")
    try:
        await ping(timeout_s)
    except Exception:
        return False
    return True


async def migrate(url: str) -> list[str]:
    """Apply the migrations the database at ``url`` lacks and return their names, oldest first.

    Uses its own short-lived connection, so it works with or without ``init_db``. Running it again applies
    nothing and returns an empty list.
    """
    config = _prepare(url)
    async with TortoiseContext() as context:
        await context.init(config=config)
        return await _apply_pending(context.db(CONNECTION_NAME))


def _prepare(url: str) -> dict[str, Any]:
    """Validate ``url`` and create a SQLite file's folder; return the tortoise config for it."""
    # tortoise caches each model's INSERT/DELETE SQL per (connection name, table), not per dialect: after a
    # switch from SQLite to PostgreSQL in one process (tests do it) it would send "?" placeholders to asyncpg.
    EXECUTOR_CACHE.clear()
    try:
        credentials = expand_db_url(url)
    except ConfigurationError as exc:
        raise ValueError(
            f"unusable database URL ({exc}): expected postgres://user@host:5432/name or sqlite://path/to.db"
        ) from None
    if credentials["engine"] == "tortoise.backends.sqlite":
        file_path = credentials["credentials"]["file_path"]
        if file_path != ":memory:" and not file_path.startswith("file:"):
            Path(file_path).parent.mkdir(parents=True, exist_ok=True)
    return tortoise_config(url)


async def _apply_pending(connection: BaseDBAsyncClient) -> list[str]:
    """Run every migration of the app not yet recorded in the database, under a cross-process lock."""
    applied: list[str] = []

    def on_progress(event: str, app_label: str, name: str) -> None:
        if event == "apply_done":
            applied.append(name)
            log.info("applied migration %s.%s", app_label, name)

    executor = MigrationExecutor(connection, _apps_config())
    async with _migration_lock(connection):
        await executor.migrate(direction="forward", progress=on_progress)
        unknown = sorted(
            key.name for key in executor.loader.applied_migrations if key not in executor.loader.graph.nodes
        )
    if unknown:
        log.warning(
            "the database has migrations this code does not know (%s): it was upgraded by a newer Atelier",
            ", ".join(unknown),
        )
    return applied


@asynccontextmanager
async def _migration_lock(connection: BaseDBAsyncClient) -> AsyncIterator[None]:
    """Migrate one process at a time, however many start together: the others wait, then find nothing pending.

    PostgreSQL: an advisory lock, held on one pooled connection while the migrations run on others, so the pool
    needs two. SQLite: an exclusive lock on a file beside the database (`<file>.migrate.lock`), since two
    processes on one machine share it (an in-memory database is private to its process and needs none).
    """
    dialect = connection.capabilities.dialect
    if dialect == "sqlite":
        async with _sqlite_file_lock(getattr(connection, "filename", ":memory:")):
            yield
        return
    if dialect != "postgres":
        yield
        return
    if getattr(connection, "pool_maxsize", 2) < 2:
        raise ValueError(
            "migrating PostgreSQL needs a connection pool of at least 2 connections (raise maxsize in the database URL)"
        )
    async with connection.acquire_connection() as lock_connection:
        await lock_connection.execute("SELECT pg_advisory_lock($1)", _PG_MIGRATION_LOCK_KEY)
        try:
            yield
        finally:
            await lock_connection.execute("SELECT pg_advisory_unlock($1)", _PG_MIGRATION_LOCK_KEY)


@asynccontextmanager
async def _sqlite_file_lock(filename: str) -> AsyncIterator[None]:
    if filename == ":memory:" or filename.startswith("file:"):
        yield
        return
    with open(f"{filename}.migrate.lock", "a") as lock_file:  # noqa: ASYNC230  (creating an empty file)
        # flock blocks until the other process is done: wait in a thread, not on the event loop.
        await asyncio.to_thread(fcntl.flock, lock_file, fcntl.LOCK_EX)
        yield  # closing the file releases the lock
