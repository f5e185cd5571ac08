"""Device and dtype choice from settings strings."""

from __future__ import annotations

import pytest
import torch

from engine.device import choose_device, choose_dtype


def test_auto_picks_cuda_only_when_present() -> None:
    assert choose_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert choose_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        choose_device("cuda")


def test_unknown_devices_and_dtypes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        choose_device("gpu0")
    with pytest.raises(ValueError, match="unknown dtype 'half'; use auto, float32"):
        choose_dtype("cpu", "half")


def test_dtypes() -> None:
    assert choose_dtype("cpu") == torch.float32
    assert choose_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    assert choose_dtype("cpu", "float16") == torch.float16
    if torch.cuda.is_available():
        expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        assert choose_dtype("cuda") == expected
