"""`atelier imagine --control/--sref/--hires` and `atelier blend` as a person runs them: subprocesses enqueueing
on real Redis and PostgreSQL to a real worker process on the tiny models; the job records are read back from
PostgreSQL to see what the pipelines were given."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import asyncpg
import cv2
import numpy as np
import pytest
import redis
from PIL import Image

from tests.guided.conftest import REDIS_URL
from tests.support import run_atelier


def blocks(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.zeros((64, 64, 3), np.uint8)
    for _ in range(3):
        x, y = rng.integers(0, 40, 2)
        pixels[y : y + 24, x : x + 24] = rng.integers(0, 256, 3)
    return Image.fromarray(pixels)


def pixel_digest(image: Image.Image) -> str:
    pixels = np.ascontiguousarray(np.asarray(image.convert("RGB")))
    return hashlib.sha256(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest()


def write(tmp_path: Path, name: str, image: Image.Image) -> Path:
    image.save(tmp_path / name)
    return tmp_path / name


def printed(result, cwd: Path) -> list[Path]:
    assert result.returncode == 0, result.stderr
    return [cwd / line for line in result.stdout.split()]


async def jobs(database_url: str) -> list[dict]:
    connection = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
    try:
        rows = await connection.fetch("SELECT kind, spec FROM jobs ORDER BY created_at")
    finally:
        await connection.close()
    return [
        {
            "kind": row["kind"],
            "spec": json.loads(row["spec"]) if isinstance(row["spec"], str) else row["spec"],
        }
        for row in rows
    ]


async def test_imagine_with_canny_runs_through_controlnet_with_the_edges_of_the_image(
    worker_env, guided_database_url: str, tmp_path: Path
) -> None:
    source = blocks(1)
    path = write(tmp_path, "edges-source.png", source)
    result = run_atelier(
        "imagine",
        "a house",
        "--control",
        "canny",
        "--image",
        str(path),
        "--control-weight",
        "0.8",
        "--seed",
        "5",
        cwd=tmp_path,
        env=worker_env,
    )
    [image] = printed(result, tmp_path)
    assert Image.open(image).size == (64, 64)

    spec = (await jobs(guided_database_url))[-1]["spec"]
    assert spec["kind"] == "guided" and spec["control"] == "canny" and spec["control_weight"] == 0.8
    assert spec["observed"]["pipeline"] == "StableDiffusionControlNetPipeline"
    edges = cv2.Canny(np.asarray(source.convert("L")), 100, 200)
    assert edges.any()
    assert spec["observed"]["condition_sha256"] == pixel_digest(Image.fromarray(np.stack([edges] * 3, -1)))


async def test_hires_gives_one_and_a_half_times_the_native_size_in_two_passes(
    worker_env, guided_database_url: str, tmp_path: Path
) -> None:
    [image] = printed(
        run_atelier("imagine", "a house", "--hires", "1.5", cwd=tmp_path, env=worker_env), tmp_path
    )
    assert Image.open(image).size == (96, 96)
    spec = (await jobs(guided_database_url))[-1]["spec"]
    assert spec["observed"]["passes"] == [[64, 64, 4], [96, 96, 2]]


def progress_of(job_id: str) -> list[tuple[int, int]]:
    """The (step, total) progress events of a job's stream, in order (the worker sends the latest step it has
    when the last send is done, so some may be skipped, never the last)."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        entries = client.xrange(f"atelier:events:{job_id}")
    finally:
        client.close()
    found = [json.loads(fields[b"data"]) for _, fields in entries if fields[b"event"] == b"progress"]
    return [(data["step"], data["total"]) for data in found]


async def latest_job(database_url: str) -> tuple[str, dict]:
    connection = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
    try:
        row = await connection.fetchrow("SELECT id, spec FROM jobs ORDER BY created_at DESC LIMIT 1")
    finally:
        await connection.close()
    return row["id"], json.loads(row["spec"]) if isinstance(row["spec"], str) else row["spec"]


async def test_a_plain_imagine_above_the_native_size_goes_through_hires_fix_in_two_passes(
    worker_env, guided_database_url: str, tmp_path: Path
) -> None:
    # tiny's native size is 64²: 128² is above it. The first pass runs 20 steps at 64², long enough next to a
    # progress send for some of its steps to be seen; the second 10 (strength 0.5) at 128².
    args = ("imagine", "a house", "--size", "128x128", "--steps", "20", "--seed", "4")
    [image] = printed(run_atelier(*args, cwd=tmp_path, env=worker_env), tmp_path)
    assert Image.open(image).size == (128, 128)
    job_id, spec = await latest_job(guided_database_url)
    assert spec["kind"] == "imagine"  # the plain job (LoRAs, batching and all), not a guided one
    assert (spec["width"], spec["height"], spec["first_width"], spec["first_height"]) == (128, 128, 64, 64)
    progress = progress_of(job_id)
    assert progress[-1] == (10, 10)
    totals = [total for _, total in progress]
    assert 20 in totals and totals == sorted(totals, reverse=True), (
        progress
    )  # the first pass, then the second

    # --hires 1: directly at 128², one pass of 20 steps, another image from the same seed
    [direct] = printed(run_atelier(*args, "--hires", "1", cwd=tmp_path, env=worker_env), tmp_path)
    assert Image.open(direct).size == (128, 128)
    job_id, spec = await latest_job(guided_database_url)
    assert (spec["kind"], spec["hires"], spec["first_width"]) == ("imagine", 1.0, None)
    assert progress_of(job_id)[-1] == (20, 20) and {total for _, total in progress_of(job_id)} == {20}
    assert Image.open(direct).tobytes() != Image.open(image).tobytes()


async def test_blend_of_three_and_a_style_reference_record_their_references(
    worker_env, guided_database_url: str, tmp_path: Path
) -> None:
    images = [write(tmp_path, f"in{i}.png", blocks(10 + i)) for i in range(3)]
    [made] = printed(run_atelier("blend", *map(str, images), cwd=tmp_path, env=worker_env), tmp_path)
    assert Image.open(made).size == (64, 64)
    blend = (await jobs(guided_database_url))[-1]["spec"]
    assert blend["prompt"] == ""
    assert [r["role"] for r in blend["references"]] == ["blend"] * 3
    assert [r["sha256"] for r in blend["references"]] == [pixel_digest(blocks(10 + i)) for i in range(3)]

    result = run_atelier(
        "imagine", "a cat", "--sref", str(images[0]), "--sref-weight", "0.6", cwd=tmp_path, env=worker_env
    )
    printed(result, tmp_path)
    styled = (await jobs(guided_database_url))[-1]["spec"]
    assert [(r["role"], r["weight"], r["sha256"]) for r in styled["references"]] == [
        ("style", 0.6, pixel_digest(blocks(10)))
    ]
    assert styled["adapter"] == "tiny-ip-adapter"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["imagine", "a house", "--control", "canny", "--image", "{text}"], "is not an image"),
        (["imagine", "a house", "--control", "canny", "--image", "{huge}"], "the limit is 20 MiB"),
        (
            ["imagine", "a house", "--control", "canny", "--image", "{image}", "--control-weight", "2.5"],
            "control weight must be between 0 and 2",
        ),
        (
            ["imagine", "a house", "--model", "flux-schnell", "--control", "canny", "--image", "{image}"],
            "has no ControlNet for canny",
        ),
        (
            ["imagine", "a house", "--control", "openpose", "--image", "{image}"],
            "openpose cannot be computed",
        ),
        (["blend", *["{image}"] * 6], "a blend takes 2 to 5 images"),
        (
            ["imagine", "a house", "--sref", "{image}", "--sref-weight", "3"],
            "reference weight must be between",
        ),
    ],
)
async def test_bad_guidance_is_one_message_and_nothing_queued(
    arguments: list[str], message: str, worker_env, guided_database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "notes.png").write_text("not a picture")
    with (tmp_path / "huge.png").open("wb") as huge:
        huge.truncate(21 * 2**20)  # over jobs.inputs.MAX_INPUT_BYTES, refused before it is read
    paths = {
        "{text}": str(tmp_path / "notes.png"),
        "{huge}": str(tmp_path / "huge.png"),
        "{image}": str(write(tmp_path, "i.png", blocks())),
    }
    before = len(await jobs(guided_database_url))
    result = run_atelier(*[paths.get(a, a) for a in arguments], cwd=tmp_path, env=worker_env)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert len(await jobs(guided_database_url)) == before


async def test_describe_prints_four_prompts_and_records_them_on_the_job(
    worker_env, guided_database_url: str, tmp_path: Path
) -> None:
    from engine.describe import STYLE_WORDS
    from engine.tiny_guided import CAPTION_WORDS

    path = write(tmp_path, "photo.png", blocks(4))
    result = run_atelier("describe", str(path), cwd=tmp_path, env=worker_env)
    assert result.returncode == 0, result.stderr
    prompts = result.stdout.strip().splitlines()
    assert len(prompts) == 4 and len(set(prompts)) == 4
    for prompt in prompts:
        caption, first, second = prompt.rsplit(", ", 2)
        assert {first, second} <= set(STYLE_WORDS)
        assert set(caption.split()) <= set(CAPTION_WORDS)  # the tiny captioner's words
    job = (await jobs(guided_database_url))[-1]
    assert job["kind"] == "describe"
    assert job["spec"]["prompts"] == prompts
    assert job["spec"]["sha256"] == pixel_digest(blocks(4))
