"""GPU memory and utilisation on /metrics: a reading sets the gauges per device index; where there is no GPU to
read (a CPU worker, CUDA not available) the families are declared but have no series at all, never a made-up 0.

This machine has no GPU, so the "absent" path is what runs here; on a machine with CUDA the reading itself is
checked against torch's own figure."""

from __future__ import annotations

import contextlib

import pytest
import torch
from prometheus_client import REGISTRY, generate_latest

from atelier.runtime import Runtime
from atelier.settings import Settings
from engine import gpu_stats
from engine.gpu_stats import GpuReading
from jobs import metrics
from jobs.worker import create_worker
from tests.support import drain

GPU_FAMILIES = (
    "atelier_gpu_memory_used_bytes",
    "atelier_gpu_memory_total_bytes",
    "atelier_gpu_utilization_ratio",
)


def gpu_series() -> list[str]:
    """The sample lines of the GPU families in what /metrics serves (comments left out)."""
    text = generate_latest(REGISTRY).decode()
    return [line for line in text.splitlines() if line.startswith(GPU_FAMILIES)]


def declared() -> set[str]:
    text = generate_latest(REGISTRY).decode()
    return {family for family in GPU_FAMILIES if f"# TYPE {family} gauge" in text}


def test_nothing_to_read_without_cuda() -> None:
    assert gpu_stats.read(torch.device("cpu")) is None
    if not torch.cuda.is_available():
        assert gpu_stats.read(torch.device("cuda")) is None
        assert gpu_stats.read(torch.device("cuda:0")) is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cuda_reading_agrees_with_torch() -> None:
    reading = gpu_stats.read(torch.device("cuda:0"))
    assert reading is not None and reading.index == 0
    _, total = torch.cuda.mem_get_info(0)
    assert reading.memory_total_bytes == pytest.approx(
        total, rel=0.02
    )  # NVML may count a reserve torch does not
    assert 0 < reading.memory_used_bytes <= total
    if reading.source == "nvml":
        assert reading.utilization is not None and 0.0 <= reading.utilization <= 1.0
    else:
        assert reading.utilization is None


def test_a_reading_sets_the_gauges_by_device_index_and_no_utilisation_without_nvml() -> None:
    try:
        metrics.export_gpu(GpuReading(7, 3 * 2**30, 80 * 2**30, None, "torch"))
        assert REGISTRY.get_sample_value("atelier_gpu_memory_used_bytes", {"gpu": "7"}) == 3 * 2**30
        assert REGISTRY.get_sample_value("atelier_gpu_memory_total_bytes", {"gpu": "7"}) == 80 * 2**30
        assert REGISTRY.get_sample_value("atelier_gpu_utilization_ratio", {"gpu": "7"}) is None
        metrics.export_gpu(GpuReading(7, 5 * 2**30, 80 * 2**30, 0.625, "nvml"))
        assert REGISTRY.get_sample_value("atelier_gpu_memory_used_bytes", {"gpu": "7"}) == 5 * 2**30
        assert REGISTRY.get_sample_value("atelier_gpu_utilization_ratio", {"gpu": "7"}) == 0.625
    finally:
        for gauge in (metrics.GPU_MEMORY_USED, metrics.GPU_MEMORY_TOTAL, metrics.GPU_UTILIZATION):
            with contextlib.suppress(KeyError):  # not set when an assertion failed first
                gauge.remove("7")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a worker that has no GPU")
async def test_a_cpu_worker_exports_no_gpu_series(embedded_settings: Settings) -> None:
    settings = embedded_settings
    async with Runtime.open(settings) as runtime:
        services = runtime.worker_services()
        assert services.engine.device.type == "cpu"
        worker = create_worker(services, queue_name=settings.queue_name, burst=True, handle_signals=False)
        await drain(worker)  # starts (the GPU is read at start-up), finds the queue empty, stops
    assert declared() == set(GPU_FAMILIES), "the families are declared, so a dashboard's queries name them"
    assert gpu_series() == []
