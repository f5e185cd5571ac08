"""`atelier inpaint` and `atelier vary` as a person runs them: real subprocesses enqueueing on real Redis and
PostgreSQL to a real worker process running the tiny models, and the files they print."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edit_support import beyond_band, box_mask, noise_image
from PIL import Image

from engine.canvas import feather_width


def printed_images(result, cwd: Path) -> list[Path]:
    assert result.returncode == 0, result.stderr
    paths = [Path(line) for line in result.stdout.split()]
    return [path if path.is_absolute() else cwd / path for path in paths]


def pixels(path: Path | Image.Image) -> np.ndarray:
    image = path if isinstance(path, Image.Image) else Image.open(path)
    return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("mode", ["insertion", "removal"])
def test_inpaint_keeps_the_input_size_and_every_pixel_beyond_the_feather_band(
    mode: str, atelier, worker_env, write_image, tmp_path: Path
) -> None:
    image = noise_image(70, 50)  # not a multiple of 8: the work size is rounded, the result is not
    mask = box_mask(image.size, (20, 12, 44, 30))
    args = [
        "inpaint",
        str(write_image("in.png", image)),
        "--mode",
        mode,
        "--mask",
        str(write_image("m.png", mask)),
    ]
    if mode == "insertion":
        args += ["--prompt", "a red kite"]
    [path] = printed_images(atelier(*args, "--seed", "5", cwd=tmp_path, env=worker_env), tmp_path)

    result = pixels(path)
    assert result.shape == (50, 70, 3)
    kept = beyond_band(mask, feather_width(image.size))
    assert np.array_equal(result[kept], pixels(image)[kept])
    inside = np.asarray(mask) == 255
    assert (result[inside] != pixels(image)[inside]).any(axis=1).mean() > 0.9  # the mask was repainted


def test_outpaint_extends_by_exactly_the_amounts_asked(
    atelier, worker_env, write_image, tmp_path: Path
) -> None:
    image = noise_image(70, 50)
    extend = "left=20,right=0,top=8,bottom=13"  # no multiple of 8 anywhere: the work canvas is padded
    source = write_image("in.png", image)
    result = atelier(
        "inpaint", str(source), "--mode", "outpaint", "--extend", extend, cwd=tmp_path, env=worker_env
    )
    [path] = printed_images(result, tmp_path)

    out = pixels(path)
    assert out.shape == (50 + 8 + 13, 70 + 20, 3)
    placed = out[8 : 8 + 50, 20 : 20 + 70]
    new_area = Image.new("L", (90, 71), 255)
    new_area.paste(0, (20, 8, 90, 58))
    kept = beyond_band(new_area, feather_width((90, 71)))[8 : 8 + 50, 20 : 20 + 70]
    assert kept.sum() > 1000
    assert np.array_equal(placed[kept], pixels(image)[kept])
    assert out[:8].std() > 0  # the new rows were painted, not left flat


def test_vary_keeps_the_size_and_one_seed_gives_the_same_pixels(
    atelier, worker_env, write_image, tmp_path: Path
) -> None:
    source = str(write_image("in.png", noise_image(70, 50)))
    args = ("vary", source, "--strength", "0.5", "--seed", "11", "--count", "2", "--prompt", "a harbour")
    first = printed_images(atelier(*args, "--out", "a", cwd=tmp_path, env=worker_env), tmp_path)
    # `imagine --image` is the same job, as the chat bots' /imagine with an image is.
    same = ("imagine", "a harbour", "--image", source, "--strength", "0.5", "--seed", "11", "--count", "2")
    second = printed_images(atelier(*same, "--out", "b", cwd=tmp_path, env=worker_env), tmp_path)

    assert len(first) == len(second) == 2
    # Equal pixels; each file carries its own C2PA signature (jobs.provenance).
    assert [pixels(p).tobytes() for p in first] == [pixels(p).tobytes() for p in second]
    assert pixels(first[0]).tobytes() != pixels(first[1]).tobytes()  # image 1 is seeded 12
    assert Image.open(first[0]).size == (70, 50)
    assert not np.array_equal(pixels(first[0]), pixels(Image.open(source)))


@pytest.mark.slow  # the CLI's own worker imports torch and diffusers: ~10 s on a 2-core CPU
def test_inpaint_runs_on_the_embedded_defaults_without_a_worker(
    atelier, edit_models: Path, write_image, tmp_path: Path
) -> None:
    image, mask = noise_image(64, 64), box_mask((64, 64), (8, 8, 24, 24))
    args = [
        "inpaint",
        str(write_image("in.png", image)),
        "--mode",
        "removal",
        "--mask",
        str(write_image("m.png", mask)),
    ]
    env = {"ATELIER_TINY_MODELS": "1", "ATELIER_MODEL_CACHE_DIR": str(edit_models)}
    [path] = printed_images(atelier(*args, cwd=tmp_path, env=env), tmp_path)
    assert Image.open(path).size == (64, 64)
    assert (tmp_path / "data" / "atelier.db").exists()


def _files(tmp_path: Path) -> dict[str, Path]:
    image = noise_image(64, 64)
    files = {
        "image": image,
        "black": Image.new("L", (64, 64), 0),
        "white": Image.new("L", (64, 64), 255),
        "wide": box_mask((128, 64), (8, 8, 40, 40)),
        "mask": box_mask((64, 64), (8, 8, 40, 40)),
        "huge": Image.new("1", (5000, 4000)),  # 20 megapixels, a few kilobytes on disk
    }
    paths = {}
    for name, picture in files.items():
        paths[name] = tmp_path / f"{name}.png"
        picture.save(paths[name])
    paths["truncated"] = tmp_path / "truncated.png"
    paths["truncated"].write_bytes(paths["image"].read_bytes()[:5000])
    paths["text"] = tmp_path / "notes.png"
    paths["text"].write_text("not an image at all\n")
    return paths


BAD_INPUT = [
    (["inpaint", "{image}", "--mode", "insertion", "--prompt", "a kite"], "needs a mask"),
    (["inpaint", "{image}", "--mode", "insertion", "--mask", "{mask}"], "needs a prompt"),
    (["inpaint", "{image}", "--mode", "removal", "--mask", "{black}"], "the mask is empty"),
    (["inpaint", "{image}", "--mode", "removal", "--mask", "{white}"], "nothing of the image would be kept"),
    (["inpaint", "{image}", "--mode", "removal", "--mask", "{wide}"], "aspect ratios differ"),
    (["inpaint", "{huge}", "--mode", "outpaint", "--extend", "left=8"], "megapixels"),
    (["inpaint", "{truncated}", "--mode", "outpaint", "--extend", "left=8"], "truncated"),
    (["inpaint", "{text}", "--mode", "outpaint", "--extend", "left=8"], "not an image"),
    (["inpaint", "{image}", "--mode", "removal", "--mask", "{missing}"], "does not exist"),
    (["inpaint", "{image}", "--mode", "outpaint", "--extend", "right=1000"], "maximum of 1024 px a side"),
    (["inpaint", "{image}", "--mode", "outpaint", "--extend", "left=-8"], "whole number of pixels"),
    (["inpaint", "{image}", "--mode", "outpaint", "--extend", "left=12.5"], "whole number of pixels"),
    (["inpaint", "{image}", "--mode", "outpaint", "--extend", "left=0"], "at least one side"),
    (["inpaint", "{image}", "--mode", "outpaint", "--extend", "sideways=8"], "left=256,right=0"),
    (["vary", "{image}", "--strength", "0"], "strength must be above 0 and at most 1"),
    (["vary", "{image}", "--strength", "1.5"], "strength must be above 0 and at most 1"),
    (["imagine", "a fox", "--image", "{image}", "--strength", "0"], "strength must be above 0 and at most 1"),
    (["imagine", "a fox", "--image", "{image}", "--ar", "16:9"], "--ar does not work with --image"),
    (["imagine", "a fox", "--image", "{text}"], "not an image"),
    (["imagine", "a fox", "--strength", "0.5"], "--strength needs --image"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_is_one_line_exit_2_and_nothing_enqueued(
    args: list[str], message: str, atelier, tmp_path: Path
) -> None:
    paths = {**_files(tmp_path), "missing": tmp_path / "missing.png"}
    result = atelier(*[arg.format(**paths) for arg in args], cwd=tmp_path, env={"ATELIER_TINY_MODELS": "1"})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("atelier: error:") and message in lines[0], result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "data").exists()  # no database, queue or blob store was opened
