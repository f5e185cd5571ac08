"""On a CUDA machine: the upscalers and face restorers run on the GPU in its half dtype (GFPGAN and CodeFormer
in bfloat16, as they do not support float16), and a full-size Real-ESRGAN tiles a large image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from enhance_support import astronaut, pixels

from engine.device import choose_dtype
from engine.enhancer import Enhancer
from engine.faces import restore_faces
from engine.registry import Registry
from engine.tiny_weights import realesrgan_state_dict
from engine.upscale import upscale

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def gpu_enhancer(models_dir: Path) -> Enhancer:
    cuda = torch.device("cuda")
    return Enhancer(models_dir, device=cuda, dtype=choose_dtype(cuda))


@pytest.mark.parametrize("name", ["tiny-upscale-x4", "tiny-upscale-x2"])
def test_upscaling_on_the_gpu_matches_the_cpu(
    gpu_enhancer: Enhancer, enhancer: Enhancer, registry: Registry, name: str
) -> None:
    image = astronaut(96)
    on_gpu = pixels(gpu_enhancer.upscale(registry.get(name), image))
    on_cpu = pixels(enhancer.upscale(registry.get(name), image))
    assert gpu_enhancer.cache.get(registry.get(name)).device.type == "cuda"
    assert on_gpu.shape == on_cpu.shape and np.abs(on_gpu - on_cpu).mean() < 4  # half precision


@pytest.mark.parametrize("name", ["tiny-gfpgan", "tiny-codeformer"])
def test_face_restorers_run_on_the_gpu_in_bfloat16(
    gpu_enhancer: Enhancer, registry: Registry, name: str
) -> None:
    result = gpu_enhancer.restore_faces(registry.get(name), astronaut())
    model = gpu_enhancer.cache.get(registry.get(name))
    assert model.device.type == "cuda" and model.dtype in (torch.bfloat16, torch.float32)
    assert len(result.faces) == 1 and result.image.size == (512, 512)
    [crop] = result.crops
    changed = (pixels(result.image) != pixels(astronaut())).any(axis=2)
    assert changed[crop.y : crop.y + crop.height, crop.x : crop.x + crop.width].mean() > 0.5
    assert not changed[crop.y + crop.height :, :].any()


def test_codeformer_fidelity_changes_the_restored_face(gpu_enhancer: Enhancer, registry: Registry) -> None:
    model = gpu_enhancer.cache.get(registry.get("tiny-codeformer"))
    faithful = pixels(restore_faces(model, astronaut(), fidelity=1.0).image)
    free = pixels(restore_faces(model, astronaut(), fidelity=0.0).image)
    assert np.abs(faithful - free).max() > 0


def test_a_full_size_real_esrgan_tiles_a_large_image() -> None:
    import spandrel

    torch.manual_seed(0)
    state = realesrgan_state_dict(4, features=64, blocks=23)  # RealESRGAN_x4plus's shapes, random weights
    model = spandrel.ModelLoader().load_from_state_dict(state).to("cuda", choose_dtype("cuda")).eval()
    image = astronaut().resize((1024, 768))
    result = upscale(model, image)  # 512 px tiles: 2x2
    assert result.size == (4096, 3072)
