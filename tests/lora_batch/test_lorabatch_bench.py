"""bench/gpu_throughput.py: the smoke run prints its table, and the full-size configs are the real models."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCH = Path(__file__).parents[2] / "bench" / "gpu_throughput.py"


def _bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_throughput", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # a child process that imports torch and diffusers: ~10 s on a 2-core CPU
def test_the_smoke_run_prints_the_table(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--smoke"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("arch "))
    assert lines[header].split() == (
        "arch size steps plain s/img atelier s/img batched s/img atelier/plain batched/seq peak GiB 1/N".split()
    )
    number = r"\d+\.\d{3}"
    for line, arch in zip(lines[header + 1 : header + 4], ["sd15", "sdxl", "flux"], strict=True):
        assert re.fullmatch(
            rf"{arch}\s+64x64\s+2\s+{number}\s+{number}\s+{number}\s+\d+\.\d\dx\s+\d+\.\d\dx\s+-", line
        ), line
    assert lines[0].startswith("# CPU;") and lines[-1].startswith("# total")


def test_the_full_size_configs_are_the_real_architectures() -> None:
    """Parameter counts of the published checkpoints, from modules built on the meta device (no memory)."""
    bench = _bench_module()
    expected = {
        "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
        "sdxl": {
            "unet": 2_567_463_684,
            "vae": 83_653_863,
            "text_encoder": 123_060_480,
            "text_encoder_2": 694_659_840,
        },
        # FLUX.1-schnell has no guidance embedder: 10,229,760 fewer parameters than FLUX.1-dev's 11.90 B.
        "flux": {
            "transformer": 11_891_178_560,
            "vae": 83_819_683,
            "text_encoder": 123_060_480,
            "text_encoder_2": 4_762_310_656,
        },
    }
    for arch, counts in expected.items():
        with bench.building_on(torch.device("meta"), torch.bfloat16):
            models = bench.FULL_MODELS[arch]()
        assert {
            name: sum(p.numel() for p in module.parameters()) for name, module in models.items()
        } == counts
        assert {p.dtype for module in models.values() for p in module.parameters()} == {torch.bfloat16}
    assert torch.get_default_dtype() == torch.float32  # building_on put the default back
