"""Upscaling: exact output sizes, tiles that leave no seam, and every kind of input image converted."""

from __future__ import annotations

import io

import numpy as np
import pytest
from enhance_support import astronaut, pixels
from PIL import Image

from engine.enhancer import Enhancer
from engine.registry import Registry
from engine.upscale import tile_count, upscale
from jobs.inputs import read_image


@pytest.fixture(scope="module")
def portrait() -> Image.Image:
    return astronaut().crop((150, 40, 222, 88))  # 72x48: the face's edge, hair and background


@pytest.mark.parametrize(("name", "scale"), [("tiny-upscale-x4", 4), ("tiny-upscale-x2", 2)])
def test_upscaling_multiplies_width_and_height_exactly(
    enhancer: Enhancer, registry: Registry, portrait: Image.Image, name: str, scale: int
) -> None:
    image = portrait.resize((67, 45))  # odd sides, not a multiple of the 4 that x2's pixel-unshuffle needs
    result = enhancer.upscale(registry.get(name), image)
    assert result.mode == "RGB" and result.size == (67 * scale, 45 * scale)
    # The tiny upscaler passes colour through, so its output looks like the input enlarged.
    nearest = pixels(image.resize(result.size, Image.Resampling.NEAREST))
    assert np.corrcoef(pixels(result).ravel(), nearest.ravel())[0, 1] > 0.8


@pytest.mark.parametrize("name", ["tiny-upscale-x4", "tiny-upscale-x2"])
def test_tiles_leave_no_seam(
    enhancer: Enhancer, registry: Registry, portrait: Image.Image, name: str
) -> None:
    model = enhancer.cache.get(registry.get(name))
    whole = pixels(upscale(model, portrait, tile=512))
    reported: list[tuple[int, int]] = []
    tiled = upscale(model, portrait, tile=24, context=12, blend=8, progress=lambda *p: reported.append(p[:2]))
    assert reported == [(step, 6) for step in range(1, 7)]  # 3x2 tiles, each reported
    assert tile_count(*portrait.size, tile=24) == 6
    assert np.abs(pixels(tiled) - whole).max() <= 1  # rounding of the blended float pixels at most

    # The same tiles without context or blending show seams: the comparison above can fail.
    naive = pixels(upscale(model, portrait, tile=24, context=0, blend=0))
    assert np.abs(naive - whole).max() > 20


def test_the_ramp_alone_hides_tile_edges(
    enhancer: Enhancer, registry: Registry, portrait: Image.Image
) -> None:
    # Without context each tile's edge is computed from zero padding; blending across the boundary hides it.
    model = enhancer.cache.get(registry.get("tiny-upscale-x4"))
    whole = pixels(upscale(model, portrait, tile=512))
    cut = np.abs(pixels(upscale(model, portrait, tile=24, context=0, blend=0)) - whole)
    blended = np.abs(pixels(upscale(model, portrait, tile=24, context=0, blend=12)) - whole)
    assert blended.max() < cut.max() / 4 and blended.mean() < cut.mean() / 4


def _encoded(image: Image.Image, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, **save)
    return buffer.getvalue()


def _input(kind: str) -> bytes:
    base = astronaut(64)
    if kind == "cmyk":
        return _encoded(base.convert("CMYK"), format="JPEG")
    if kind == "16-bit":
        sixteen = Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257)
        assert sixteen.mode == "I;16"
        return _encoded(sixteen, format="PNG")
    if kind == "palette":
        return _encoded(base.convert("P", palette=Image.Palette.ADAPTIVE), format="PNG")
    if kind == "alpha":
        return _encoded(base.convert("RGBA"), format="PNG")
    flipped = base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return _encoded(base, format="GIF", save_all=True, append_images=[flipped])


@pytest.mark.parametrize("kind", ["cmyk", "16-bit", "palette", "alpha", "animated"])
def test_every_kind_of_input_is_converted_then_upscaled(
    enhancer: Enhancer, registry: Registry, kind: str
) -> None:
    image = read_image(_input(kind), name=kind)
    assert image.mode == "RGB" and image.size == (64, 64)
    result = enhancer.upscale(registry.get("tiny-upscale-x2"), image)
    assert result.size == (128, 128) and pixels(result).std() > 10
