"""The webhook tests' services: this area's PostgreSQL database (opened in this process too, to read delivery rows)
and Redis database, an API key, and a local receiver that checks signatures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from redis.asyncio import Redis

from bots.api.keys import create_key
from storage.api_models import ApiKey, WebhookDelivery
from storage.db import close_db, init_db
from tests.api_webhooks.receiver import Receiver, start_receiver
from tests.support import redis_url

REDIS_URL = redis_url(16)  # this area's database on the run's Redis; flushed per module


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def database_url(postgres_databases) -> AsyncIterator[str]:
    url = await postgres_databases("atelier_test_webhooks")
    await init_db(url)
    yield url
    await close_db()


@pytest_asyncio.fixture(loop_scope="session")
async def flushed_redis() -> AsyncIterator[str]:
    client = Redis.from_url(REDIS_URL)
    await client.flushdb()
    await client.aclose()
    yield REDIS_URL


@pytest_asyncio.fixture(loop_scope="session")
async def no_deliveries(database_url: str) -> None:
    """No delivery rows left by an earlier test (a sweeper would send them too)."""
    await WebhookDelivery.all().delete()


@pytest_asyncio.fixture(loop_scope="session")
async def api_key(database_url: str) -> tuple[ApiKey, str]:
    """A new key of tenant discord:4242, and its text."""
    return await create_key("discord:4242", "webhook tests")


@pytest_asyncio.fixture(loop_scope="session")
async def receiver(api_key: tuple[ApiKey, str]) -> AsyncIterator[Receiver]:
    got = Receiver(secret=api_key[0].webhook_secret)
    runner = await start_receiver(got)
    yield got
    if got.hold is not None:
        got.hold.set()
    await runner.cleanup()
