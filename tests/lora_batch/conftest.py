"""Fixtures for LoRA, batching, output and GPU-configuration tests: a CPU engine on the tiny presets with a
LoRA folder holding random tiny LoRAs, and a runtime on the real services (Redis DB 11, PostgreSQL
`atelier_test_batch`, moto S3)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
from peft import LoraConfig, get_peft_model_state_dict

from atelier.runtime import Runtime
from engine.engine import Engine
from engine.registry import Registry
from engine.tiny import ensure_built
from tests.support import emptied_redis, redis_url, run_burst_worker, service_runtime

REDIS_URL = redis_url(11)  # this area's database on the run's Redis; flushed per test
POSTGRES_DATABASE = "atelier_test_batch"
ATTENTION_LAYERS = ["to_q", "to_k", "to_v", "to_out.0"]


def make_lora(pipeline_dir: Path, folder: Path, name: str, *, seed: int, sdxl: bool = False) -> Path:
    """Write `<folder>/<name>.safetensors`: a rank-4 LoRA with random weights on the attention layers of the
    UNet in `pipeline_dir`, in the diffusers/peft layout real LoRA files have."""
    unet = UNet2DConditionModel.from_pretrained(pipeline_dir / "unet")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # init_lora_weights=False draws B at random too (peft's default starts B at zero: a no-op LoRA).
        unet.add_adapter(
            LoraConfig(r=4, lora_alpha=4, target_modules=ATTENTION_LAYERS, init_lora_weights=False)
        )
    pipeline_class = StableDiffusionXLPipeline if sdxl else StableDiffusionPipeline
    pipeline_class.save_lora_weights(
        folder, unet_lora_layers=get_peft_model_state_dict(unet), weight_name=f"{name}.safetensors"
    )
    return folder / f"{name}.safetensors"


@pytest.fixture(scope="session")
def registry() -> Registry:
    return Registry.load()


@pytest.fixture(scope="session")
def lora_dir(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, registry: Registry) -> Path:
    """`ink` and `paper` for the tiny SD preset, `sketch` for tiny SDXL, and a file that is no LoRA."""
    folder = tmp_path_factory.mktemp("loras")
    tiny = ensure_built(registry.get("tiny"), models_dir)
    make_lora(tiny, folder, "ink", seed=1)
    make_lora(tiny, folder, "paper", seed=2)
    make_lora(ensure_built(registry.get("tiny-sdxl"), models_dir), folder, "sketch", seed=3, sdxl=True)
    (folder / "broken.safetensors").write_bytes(b"not a safetensors file")
    (folder / "not a name.safetensors").write_bytes(b"ignored: spaces are not allowed in names")
    return folder


@pytest.fixture(scope="session")
def engine(registry: Registry, models_dir: Path, lora_dir: Path) -> Engine:
    for name in ("tiny", "tiny-sdxl", "tiny-flux"):
        ensure_built(registry.get(name), models_dir)
    return Engine(registry, models_dir, device="cpu", lora_dir=lora_dir)


@pytest_asyncio.fixture(loop_scope="session")
async def runtime(
    tmp_path: Path, models_dir: Path, lora_dir: Path, postgres_databases, moto_s3_endpoint: str
) -> AsyncIterator[Runtime]:
    async with service_runtime(
        tmp_path,
        models_dir,
        redis_url=await emptied_redis(REDIS_URL),
        database_url=await postgres_databases(POSTGRES_DATABASE),
        bucket="atelier-test-batch",
        s3_endpoint=moto_s3_endpoint,
        lora_dir=lora_dir,
    ) as rt:
        yield rt


@pytest.fixture
def run_worker(runtime: Runtime) -> Callable:
    """Run a burst worker in this process until the queue is empty, with the given services."""

    async def run(services, **overrides: object) -> None:
        await run_burst_worker(services, runtime.settings.queue_name, **overrides)

    return run
