"""The `atelier` command as a person runs it: a real subprocess, its exit status, what it prints."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image as PILImage

from tests.support import replayed_content, run_atelier


def test_demo_prints_the_path_of_a_png_on_embedded_defaults(tmp_path: Path, models_dir: Path) -> None:
    # Only the model cache is pointed at the session's (to skip rebuilding tiny models); everything else is the
    # embedded default: SQLite, local blobs and a Redis the demo starts and stops itself.
    result = run_atelier("demo", cwd=tmp_path, env={"ATELIER_MODEL_CACHE_DIR": str(models_dir)})
    assert result.returncode == 0, result.stderr
    last = Path(result.stdout.strip().splitlines()[-1])
    path = last if last.is_absolute() else tmp_path / last
    with PILImage.open(path) as image:
        assert image.format == "PNG" and image.size == (64, 64)
    assert (tmp_path / "data" / "atelier.db").exists()
    assert not list((tmp_path / "data").glob("**/*.sock"))  # the embedded Redis was stopped


def test_imagine_twice_with_one_seed_gives_identical_images(tmp_path: Path, models_dir: Path) -> None:
    env = {"ATELIER_MODEL_CACHE_DIR": str(models_dir), "ATELIER_TINY_MODELS": "1"}
    args = ("imagine", "a quiet harbour", "--seed", "42", "--steps", "3", "--count", "2", "--ar", "3:2")
    first = run_atelier(*args, "--out", "a", cwd=tmp_path, env=env)
    second = run_atelier(*args, "--out", "b", cwd=tmp_path, env=env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    a = [tmp_path / p for p in first.stdout.split()]
    b = [tmp_path / p for p in second.stdout.split()]
    assert len(a) == len(b) == 2
    # The same pixels and recipe; the files differ in their C2PA signature only (jobs.provenance).
    assert [replayed_content(p.read_bytes()) for p in a] == [replayed_content(p.read_bytes()) for p in b]
    assert [PILImage.open(p).text for p in a] == [PILImage.open(p).text for p in b]
    assert replayed_content(a[0].read_bytes()) != replayed_content(a[1].read_bytes())
    assert PILImage.open(a[0]).size == (96, 64)  # 3:2, short side raised to the 64 px minimum


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["imagine", ""], "the prompt is empty"),
        (["imagine", "x" * 1001], "limit is 1000"),
        (["imagine", "a fox", "--size", "100x64"], "multiple of 8"),
        (["imagine", "a fox", "--size", "4096x64"], "4096"),
        (["imagine", "a fox", "--steps", "0"], "steps"),
        (["imagine", "a fox", "--count", "99"], "count"),
        (["imagine", "a fox", "--model", "nope"], "nope"),
    ],
)
def test_bad_input_is_one_line_a_nonzero_exit_and_nothing_enqueued(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = run_atelier(*args, cwd=tmp_path, env={"ATELIER_TINY_MODELS": "1"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("atelier: error:") and message in lines[0], result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "data").exists()  # no database, no queue, no blobs were touched
