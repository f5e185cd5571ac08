"""Build Atelier's processes from settings: the shared clients every front-end and worker needs.

`Runtime.open(settings)` connects (or starts) Redis, opens the database and applies migrations, opens the blob
store and loads the model registry; leaving the context closes them in reverse. `worker_services()` adds what
only a worker needs (the engine, which imports torch).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from arq.connections import ArqRedis, RedisSettings, create_pool

from atelier.embedded_redis import EmbeddedRedis
from atelier.settings import Settings
from engine.registry import Registry
from jobs import prompt_check
from jobs.replier import Replier
from jobs.services import WorkerServices
from storage.blobs import BlobStore, open_blob_store
from storage.db import close_db, init_db


def blob_store_for(settings: Settings) -> BlobStore:
    """The blob store the settings name (a local folder, or S3 with its credentials); ValueError if unusable."""
    return open_blob_store(
        settings.blob_url,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.secret("s3_access_key_id"),
        secret_access_key=settings.secret("s3_secret_access_key"),
    )


@dataclass
class Runtime:
    settings: Settings
    redis: ArqRedis
    blobs: BlobStore
    registry: Registry
    embedded_redis: EmbeddedRedis | None = None
    _engine: object | None = field(default=None, repr=False)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[Runtime]:
        async with contextlib.AsyncExitStack() as stack:
            embedded = None
            if settings.redis_url:
                redis_settings = RedisSettings.from_dsn(settings.redis_url)
            else:
                embedded = EmbeddedRedis(settings.data_dir)
                embedded.start()
                stack.callback(embedded.stop)
                redis_settings = RedisSettings(unix_socket_path=embedded.socket_path)
            redis = await create_pool(redis_settings)
            stack.push_async_callback(redis.aclose)
            await init_db(settings.database_url)
            stack.push_async_callback(close_db)
            blobs = blob_store_for(settings)
            stack.push_async_callback(blobs.close)
            registry = Registry.load(settings.models_file)
            remote = _configure_prompt_check(settings, registry, redis)
            stack.callback(prompt_check.configure, None)
            if remote is not None:
                stack.push_async_callback(remote.aclose)
            yield cls(settings, redis, blobs, registry, embedded)

    async def services_answer(self, timeout_s: float = 3.0) -> bool:
        """Whether Redis and the database both answer now: what every process's /healthz needs first."""
        from storage.db import ping

        async with asyncio.timeout(timeout_s):
            await self.redis.ping()
        await ping(timeout_s)
        return True

    def webhook_sweeper(self):  # -> jobs.webhooks.Sweeper
        """This process's sender of due webhooks (`jobs.webhooks`), under the settings' outbound rules; every
        `atelier api` and `atelier worker` process runs one (`async with sweeper.running(): …`)."""
        from jobs.outbound import OutboundRules
        from jobs.webhooks import RetryPolicy, Sweeper

        s = self.settings
        rules = OutboundRules.of(s.webhook_allow_private, s.webhook_allowed_hosts)
        return Sweeper(rules, RetryPolicy(timeout_s=s.webhook_timeout_s, retry_s=s.webhook_retry_s))

    def worker_services(self, repliers: dict[str, Replier] | None = None) -> WorkerServices:
        """The services a worker's job functions get; the engine is built here, once per process."""
        from engine.engine import Engine  # torch is imported by workers only

        if self._engine is None:
            budget = self.settings.model_memory_gb
            self._engine = Engine(
                self.registry,
                self.settings.models_dir,
                device=self.settings.device,
                dtype=self.settings.dtype,
                memory_budget_bytes=int(budget * 2**30) if budget else None,
                lora_dir=self.settings.loras_dir,
            )
        return WorkerServices(
            redis=self.redis,
            registry=self.registry,
            engine=self._engine,
            blobs=self.blobs,
            repliers=dict(repliers or {}),
            max_batch=self.settings.max_batch,
            credentials=self.settings.c2pa_credentials(),
        )


def _configure_prompt_check(
    settings: Settings, registry: Registry, redis: ArqRedis
) -> prompt_check.RemoteClassifier | None:
    """Give this process its prompt check (jobs.prompt_check), unless the settings turn it off: prompts are sent
    to the workers' classifier (a `RemoteClassifier`, returned so it is closed with the runtime); the local
    classifier, which loads torch only when first used, is what this process serves with if it is a worker."""
    if settings.prompt_classifier == "off":
        prompt_check.configure(None)
        return None
    preset = registry.resolve(
        settings.prompt_classifier or None, role="prompt-safety", tiny=settings.tiny_models
    )
    remote = prompt_check.RemoteClassifier(redis, settings.prompt_check_wait_s)
    prompt_check.configure(remote, local=prompt_check.PromptClassifier(preset, settings.models_dir))
    return remote
