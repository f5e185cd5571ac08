"""`atelier upscale`, `atelier enhance` and `atelier imagine --enhance-faces` as a person runs them: real
subprocesses enqueueing on real Redis and PostgreSQL to a real worker process on the tiny models."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from enhance_support import astronaut, faceless, pixels, printed_paths
from PIL import Image

from tests.support import run_atelier


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("scale", ["4", "2"])
def test_upscale_gives_exactly_scale_times_the_width_and_height(
    worker_env, tmp_path: Path, scale: str
) -> None:
    source = _write(tmp_path / "in.png", _png(astronaut(80).crop((0, 0, 80, 72))))
    result = run_atelier("upscale", str(source), "--scale", scale, cwd=tmp_path, env=worker_env)
    [path] = printed_paths(result, tmp_path)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (80 * int(scale), 72 * int(scale))


def test_enhance_without_a_face_says_so_and_returns_the_image_unchanged(worker_env, tmp_path: Path) -> None:
    image = faceless()
    source = _write(tmp_path / "cup.png", _png(image))
    result = run_atelier("enhance", str(source), "--faces", cwd=tmp_path, env=worker_env)
    [path] = printed_paths(result, tmp_path)
    assert np.array_equal(pixels(path), pixels(image))
    assert "atelier: no face found; the image is unchanged" in result.stderr.splitlines()

    upscaled = run_atelier("enhance", str(source), "--faces", "--upscale", "2", cwd=tmp_path, env=worker_env)
    [path] = printed_paths(upscaled, tmp_path)
    assert Image.open(path).size == (192, 128)
    assert "atelier: no face found" in upscaled.stderr.splitlines()


@pytest.mark.slow  # a random CodeFormer at its fixed 512 px: seconds on a CPU
def test_enhance_restores_the_face_after_upscaling(worker_env, enhancer, registry, tmp_path: Path) -> None:
    image = astronaut(128)
    source = _write(tmp_path / "astronaut.png", _png(image))
    args = ["enhance", str(source), "--faces", "--upscale", "2", "--model", "codeformer", "--fidelity", "0.7"]
    result = run_atelier(*args, cwd=tmp_path, env=worker_env)
    [path] = printed_paths(result, tmp_path)
    assert "atelier: 1 face restored" in result.stderr.splitlines()
    restored = pixels(path)
    assert restored.shape == (256, 256, 3)
    # Against the same upscale without restoration: the face (found at about (43, 16), 26 px wide, before the
    # 2x upscale) was replaced, the far corner was not touched.
    upscaled = pixels(enhancer.upscale(registry.get("tiny-upscale-x2"), image))
    face = (slice(2 * 16, 2 * 42), slice(2 * 43, 2 * 69))
    assert (restored[face] != upscaled[face]).any(axis=2).mean() > 0.9
    assert np.array_equal(restored[180:, 180:], upscaled[180:, 180:])


def test_imagine_enhance_faces_generates_then_looks_for_faces(worker_env, tmp_path: Path) -> None:
    result = run_atelier(
        "imagine", "a portrait", "--enhance-faces", "--seed", "7", cwd=tmp_path, env=worker_env
    )
    [path] = printed_paths(result, tmp_path)
    assert Image.open(path).size == (64, 64)


def _bomb(side: int) -> bytes:
    """A PNG whose header claims side x side pixels (its data is a 1x1 image's: never decoded)."""
    data = bytearray(_png(Image.new("RGB", (1, 1))))
    ihdr = 8 + 4 + 4  # signature, chunk length, chunk type
    data[ihdr : ihdr + 8] = struct.pack(">II", side, side)
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13])))
    return bytes(data)


@pytest.mark.parametrize(
    ("command", "content", "message"),
    [
        (["upscale"], b"this is not an image", "is not an image Atelier can read"),
        (["upscale"], _png(astronaut(96))[:2000], "looks truncated or damaged"),
        (["enhance", "--faces"], _bomb(5000), "is 5000x5000 (25.0 megapixels); the limit is 16.8 megapixels"),
        # Past Pillow's own bomb limit (~89 MP) Pillow refuses the header itself; still named as too many pixels.
        (["upscale"], _bomb(50000), "input.png has far more pixels than the limit"),
        (["upscale", "--scale", "3"], _png(astronaut(96)), "scale must be 2 or 4 (got 3)"),
        (["enhance"], _png(astronaut(96)), "enhance needs --faces"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_enqueued(
    tmp_path: Path, command: list[str], content: bytes, message: str
) -> None:
    source = _write(tmp_path / "input.png", content)
    result = run_atelier(
        command[0], str(source), *command[1:], cwd=tmp_path, env={"ATELIER_TINY_MODELS": "1"}
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("atelier: error:") and message in lines[0], result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "data").exists()  # no database, no queue, no blobs were touched
