"""GPU seconds per job: the time a job's work actually held the GPU thread, which is what quotas charge.

A job's wall time in the worker also holds waits (for a batch to form, for the GPU thread to come free), and a
batch's time is shared by its members. So `run_job` opens a meter for each job in a context variable, and the
code that runs on the GPU thread (`jobs.lifecycle.on_gpu`, `jobs.batching.GpuBatcher`) charges to it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class GpuMeter:
    seconds: float = 0.0

    def charge(self, seconds: float) -> None:
        self.seconds += seconds


_current: ContextVar[GpuMeter | None] = ContextVar("atelier_gpu_meter", default=None)


def start() -> GpuMeter:
    """A fresh meter for the job running in this task (asyncio tasks each have their own context)."""
    meter = GpuMeter()
    _current.set(meter)
    return meter


def current() -> GpuMeter | None:
    return _current.get()


def charge(seconds: float) -> None:
    meter = _current.get()
    if meter is not None:
        meter.charge(seconds)
