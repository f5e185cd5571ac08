"""Prometheus metrics that workers export (served on /metrics by the composition root).

Label sets stay bounded: kinds, models, tiers and statuses, never tenants or users. What each tenant used (GPU
seconds, images) is in the usage ledger (quotas.ledger: `atelier admin usage TENANT`), not in labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:  # torch-free at run time: front-ends import this module
    from engine.gpu_stats import GpuReading

JOBS = Counter("atelier_jobs_total", "Jobs finished, by kind, model and status.", ["kind", "model", "status"])
IMAGES = Counter("atelier_images_total", "Images generated, by model and status.", ["model", "status"])
GENERATION_SECONDS = Histogram(
    "atelier_generation_seconds",
    "Seconds of GPU work per job, by kind and model.",
    ["kind", "model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320),
)
DELIVERIES_FAILED = Counter(
    "atelier_deliveries_failed_total",
    "Jobs whose results could not be posted after every retry.",
    ["platform"],
)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640, 1800)
QUEUE_WAIT_SECONDS = Histogram(
    "atelier_queue_wait_seconds",
    "Seconds from enqueue to a job's first start, by model and tier.",
    ["model", "tier"],
    buckets=WAIT_BUCKETS,
)
END_TO_END_SECONDS = Histogram(
    "atelier_end_to_end_seconds",
    "Seconds from enqueue to a job's images stored, by model and tier (before delivery to the chat).",
    ["model", "tier"],
    buckets=WAIT_BUCKETS,
)
QUEUE_LENGTH = Gauge("atelier_queue_length", "Jobs waiting in the queue.", ["queue"])
MODEL_CACHE_HITS = Gauge("atelier_model_cache_hits", "Pipeline cache hits since the worker started.")
MODEL_CACHE_MISSES = Gauge("atelier_model_cache_misses", "Pipeline cache misses (loads) since start.")
MODEL_LOAD_SECONDS = Gauge("atelier_model_load_seconds", "Seconds spent loading pipelines since start.")
MODEL_CACHE_EVICTIONS = Gauge(
    "atelier_model_cache_evictions", "Pipelines evicted from the GPU to make room since the worker started."
)

# GPU (engine.gpu_stats): set by each worker on CUDA every few seconds; absent, not 0, where nothing was read.
GPU_MEMORY_USED = Gauge(
    "atelier_gpu_memory_used_bytes",
    "GPU memory in use (NVML: by every process on the GPU; else torch's device-wide figure), by device index.",
    ["gpu"],
)
GPU_MEMORY_TOTAL = Gauge("atelier_gpu_memory_total_bytes", "GPU memory in all, by device index.", ["gpu"])
GPU_UTILIZATION = Gauge(
    "atelier_gpu_utilization_ratio",
    "Share of the last sample period a kernel ran on the GPU (0-1), by device index; NVML only.",
    ["gpu"],
)
WEBHOOK_DELIVERIES = Counter(
    "atelier_webhook_deliveries_total",
    "Webhook attempts by outcome: delivered (a 2xx), failed (to be tried again), given_up (no more attempts).",
    ["outcome"],
)
WEBHOOK_OUTCOMES = ("delivered", "failed", "given_up")
PROMPT_CHECKS_UNANSWERED = Counter(
    "atelier_prompt_checks_unanswered_total",
    "Prompt checks no worker classified within ATELIER_PROMPT_CHECK_WAIT_S: admitted on the word lists alone.",
)


def export_gpu(reading: GpuReading | None) -> None:
    """Set the GPU gauges from `reading`; None leaves them without series (a CPU worker exports none)."""
    if reading is None:
        return
    gpu = str(reading.index)
    GPU_MEMORY_USED.labels(gpu).set(reading.memory_used_bytes)
    GPU_MEMORY_TOTAL.labels(gpu).set(reading.memory_total_bytes)
    if reading.utilization is not None:
        GPU_UTILIZATION.labels(gpu).set(reading.utilization)
