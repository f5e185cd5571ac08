"""What an operator of a fleet reads on /metrics: queue wait (enqueue → start) and end-to-end time by model and
tier, and the model cache's evictions.

In-process on the embedded defaults (SQLite, Atelier's own Redis in the test's folder): a real burst worker, real
tiny models. Tenants never appear as labels (their GPU seconds are in the usage ledger)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from atelier.runtime import Runtime
from atelier.settings import Settings
from jobs import routing
from jobs.queue import enqueue
from jobs.specs import ReplyTarget, imagine_spec
from jobs.worker import create_worker
from storage.models import Job, JobStatus, get_or_create_tenant, get_or_create_user
from tests.support import drain

CLI = ReplyTarget(platform="cli")


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(f"{name}_count", labels) or 0.0


async def test_queue_wait_and_end_to_end_are_observed_by_model_and_tier(embedded_settings: Settings) -> None:
    settings = embedded_settings
    async with Runtime.open(settings) as runtime:
        tenant = await get_or_create_tenant("discord", "4242")  # a new Discord server: the free tier
        user = await get_or_create_user(tenant, "7")
        before = {
            name: _count(name, model="tiny-sdxl", tier="free")
            for name in ("atelier_queue_wait_seconds", "atelier_end_to_end_seconds")
        }
        spec = imagine_spec(
            runtime.registry, tiny=True, prompt="a fox", model="tiny-sdxl", steps=2, size="64x64"
        )
        queued = await enqueue(
            runtime.redis,
            spec,
            request_id="test:fleet-metrics",
            reply_target=CLI,
            queue_name=settings.queue_name,
            tenant=tenant,
            user=user,
            tiers=settings.load_tiers(),
        )
        assert await runtime.redis.get(routing.model_key(queued.job_id)) == b"tiny-sdxl"
        worker = create_worker(
            runtime.worker_services(), queue_name=settings.queue_name, burst=True, handle_signals=False
        )
        await drain(worker)

        assert (await Job.get(id=queued.job_id)).status == JobStatus.SUCCEEDED
        for name, count in before.items():
            assert _count(name, model="tiny-sdxl", tier="free") == count + 1, name
        assert REGISTRY.get_sample_value("atelier_model_cache_evictions") is not None
        # What the worker's heartbeat advertises as resident, for the other workers' routing.
        assert "tiny-sdxl" in worker.resident()
