"""What a worker's GPU is doing, for the metrics: memory used and total, and utilisation.

Read from NVML (the `nvidia-ml-py` package, imported as `pynvml`) where it imports and the driver answers: memory
as the driver counts it (every process on the GPU) and utilisation. Otherwise, on CUDA, from torch
(`torch.cuda.mem_get_info`): memory only, since utilisation is known to the driver alone. On any other device,
or where CUDA is not available, nothing: an absent series is honest, a 0 would say "idle" of a GPU nobody read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuReading:
    """One GPU at one moment. `index` is the torch device index as this process sees it (after
    CUDA_VISIBLE_DEVICES); `utilization` is the share of the last sample period a kernel ran (0–1), None when
    only torch was asked."""

    index: int
    memory_used_bytes: int
    memory_total_bytes: int
    utilization: float | None
    source: str  # "nvml" or "torch"


_nvml: dict[str, Any] = {}  # {"module": pynvml} once initialised; {"module": None} when NVML is not usable


def _nvml_module() -> Any:
    """pynvml, initialised once per process; None where it is not installed or the driver does not answer."""
    if "module" not in _nvml:
        try:
            import pynvml

            pynvml.nvmlInit()
        except ImportError:
            _nvml["module"] = None
        except Exception as exc:  # pynvml.NVMLError: no driver, no library, not permitted
            log.info("GPU metrics: NVML is not usable here (%s); memory is read from torch", exc)
            _nvml["module"] = None
        else:
            _nvml["module"] = pynvml
    return _nvml["module"]


def read(device: torch.device) -> GpuReading | None:
    """The reading of `device`, or None when it is not a CUDA device this process can use."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device() if device.index is None else device.index
    if index >= torch.cuda.device_count():
        return None
    pynvml = _nvml_module()
    if pynvml is not None:
        try:
            return _from_nvml(pynvml, index)
        except Exception as exc:  # a MIG slice or a UUID NVML does not know: torch still knows the memory
            log.debug("GPU metrics: NVML cannot read cuda:%d (%s)", index, exc)
    free, total = torch.cuda.mem_get_info(index)
    return GpuReading(index, total - free, total, None, "torch")


def _from_nvml(pynvml: Any, index: int) -> GpuReading:
    # NVML numbers GPUs physically; torch after CUDA_VISIBLE_DEVICES. The UUID is the same in both.
    uuid = str(torch.cuda.get_device_properties(index).uuid)
    handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
    return GpuReading(index, int(memory.used), int(memory.total), rates.gpu / 100.0, "nvml")
