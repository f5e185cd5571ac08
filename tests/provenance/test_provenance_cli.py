"""Provenance and replay at the terminal (issue 17): every image carries its recipe and signed Content
Credentials; `atelier verify` accepts a fresh image and rejects an edited one; `atelier replay` makes the same
pixels again; bad input is one line, exit 2, nothing queued."""

from __future__ import annotations

import io
import json
import os
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from engine.output import png_bytes
from jobs import provenance, recipe
from jobs.signing import load_credentials
from tests.provenance.support import edit_recipe, without
from tests.support import run_atelier


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> dict:
    """One installation (embedded defaults in its own folder) and the two images an `atelier imagine` made."""
    home = tmp_path_factory.mktemp("installation")
    env = {"ATELIER_MODEL_CACHE_DIR": str(models_dir), "ATELIER_TINY_MODELS": "1"}
    args = ("imagine", "a quiet harbour", "--seed", "42", "--steps", "3", "--count", "2", "--chaos", "40")
    result = run_atelier(*args, "--out", "a", cwd=home, env=env)
    assert result.returncode == 0, result.stderr
    paths = [home / line for line in result.stdout.split()]
    assert len(paths) == 2
    return {"home": home, "env": env, "paths": paths, "stderr": result.stderr}


def _jobs(home: Path) -> int:
    with sqlite3.connect(home / "data" / "atelier.db") as db:
        return db.execute("SELECT count(*) FROM jobs").fetchone()[0]


def _one_line_error(result, *needles: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("atelier: error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert result.stdout == ""
    return lines[0]


def test_each_image_carries_its_recipe_and_signed_credentials(made: dict) -> None:
    for index, path in enumerate(made["paths"]):
        data = path.read_bytes()
        found = recipe.parse(recipe.read_text(data))
        assert found["kind"] == "imagine" and found["spec"]["prompt"] == "a quiet harbour"
        assert found["image"]["index"] == index and found["image"]["seed"] == 42 + index
        assert found["atelier"] and found["models"][0]["preset"] == "tiny"
        assert len(found["models"][0]["sha256"]) == 64 and found["models"][0]["scheduler"]
        verdict = provenance.check(
            data, recipe.read_text(data), (made["home"] / "data/c2pa/ca.pem").read_bytes()
        )
        assert verdict.ok() and verdict.trusted and verdict.ai_generated and verdict.recipe_bound
    # With chaos, image 1 ran at a guidance of its own: the recipe says which, so a replay can use it.
    guidances = [recipe.parse(recipe.read_text(p.read_bytes()))["image"]["guidance"] for p in made["paths"]]
    assert guidances[0] != guidances[1]
    key = made["home"] / "data" / "c2pa" / "operator.key"
    assert os.stat(key).st_mode & 0o077 == 0  # the operator's key is its owner's only
    assert "PRIVATE KEY" not in made["stderr"] and key.read_text().splitlines()[1] not in made["stderr"]


def test_verify_accepts_a_fresh_image(made: dict) -> None:
    result = run_atelier("verify", str(made["paths"][1]), cwd=made["home"], env=made["env"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK:") and "trusted by this installation" in result.stdout
    assert "trainedAlgorithmicMedia" in result.stdout and "seed 43" in result.stdout


def test_replay_gives_the_original_bytes(made: dict) -> None:
    original = made["paths"][1]  # image 1 of 2: its own seed and (with chaos) its own guidance
    result = run_atelier("replay", str(original), "--out", "b", cwd=made["home"], env=made["env"])
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.split()
    assert (made["home"] / line).read_bytes() == original.read_bytes()
    assert "byte for byte" in result.stderr
    # The file is the original, so it verifies as the original does.
    verified = run_atelier("verify", str(made["home"] / line), cwd=made["home"], env=made["env"])
    assert verified.returncode == 0, verified.stdout


def test_compare_tells_a_replay_that_differs(made: dict) -> None:
    """What the replay is compared by: the PNG without text and manifest. Equal pixels with another recipe and
    signature are the same image; one changed pixel is not, and the sentence says by how much."""
    data = made["paths"][0].read_bytes()
    same, said = recipe.compare(without(data, b"caBX"), data, "a.png")
    assert same and "a.png, byte for byte" in said
    with Image.open(io.BytesIO(data)) as image:
        pixels = image.convert("RGB")
    pixels.putpixel((0, 0), tuple((v + 7) % 256 for v in pixels.getpixel((0, 0))))
    same, said = recipe.compare(png_bytes(pixels), data, "a.png")
    assert not same and "3 of" in said and "by up to" in said, said


def test_verify_rejects_an_edited_recipe_and_replay_refuses_it(made: dict, tmp_path: Path) -> None:
    edited = tmp_path / "edited.png"
    edited.write_bytes(
        edit_recipe(
            made["paths"][0].read_bytes(), lambda r: r | {"spec": r["spec"] | {"prompt": "a burning harbour"}}
        )
    )
    assert recipe.parse(recipe.read_text(edited.read_bytes()))["spec"]["prompt"] == "a burning harbour"
    result = run_atelier("verify", str(edited), cwd=made["home"], env=made["env"])
    assert result.returncode == 1
    assert result.stdout.startswith("FAILED:") and "changed after signing" in result.stdout

    before = _jobs(made["home"])
    refused = run_atelier("replay", str(edited), cwd=made["home"], env=made["env"])
    _one_line_error(refused, "edited.png", "changed after signing")
    assert _jobs(made["home"]) == before


def test_verify_names_a_stranger_signer_unless_any_signer_is_asked(made: dict, tmp_path: Path) -> None:
    data = made["paths"][0].read_bytes()
    text = recipe.read_text(data)
    stranger = load_credentials(key_file=None, cert_file=None, trust_file=None, local_dir=tmp_path / "other")
    bare = png_bytes(Image.open(io.BytesIO(data)), {recipe.RECIPE_KEY: text})
    (tmp_path / "theirs.png").write_bytes(provenance.sign_png(bare, text, stranger, "theirs.png"))

    result = run_atelier("verify", str(tmp_path / "theirs.png"), cwd=made["home"], env=made["env"])
    assert result.returncode == 1 and "not a certificate this installation trusts" in result.stdout
    accepted = run_atelier(
        "verify", "--any-signer", str(tmp_path / "theirs.png"), cwd=made["home"], env=made["env"]
    )
    assert accepted.returncode == 0, accepted.stdout


def _signed(home: Path, change) -> bytes:
    """A validly signed image of this installation whose recipe is `change(recipe)`: what another
    installation, with other models and LoRAs, would have made."""
    text = recipe.build(
        "imagine",
        {
            "kind": "imagine", "prompt": "a red fox", "negative": "", "model": "tiny", "width": 64,
            "height": 64, "steps": 2, "guidance": 5.0, "seed": 3, "count": 1, "loras": [],
        },
        index=0, seed=3, models=[], loras=[],
    )  # fmt: skip
    text = json.dumps(change(json.loads(text)), sort_keys=True, separators=(",", ":"))
    credentials = load_credentials(key_file=None, cert_file=None, trust_file=None, local_dir=home / "c2pa")
    bare = png_bytes(Image.new("RGB", (64, 64), "teal"), {recipe.RECIPE_KEY: text})
    return provenance.sign_png(bare, text, credentials, "made-elsewhere.png")


@pytest.mark.parametrize(
    ("make", "needles"),
    [
        (lambda home: png_bytes(Image.new("RGB", (64, 64))), ["has no Atelier recipe"]),
        (lambda home: b"just some text", ["has no Atelier recipe"]),
        (lambda home: without(_signed(home, lambda r: r), b"caBX"), ["no Content Credentials"]),
        (
            lambda home: _signed(home, lambda r: r | {"spec": r["spec"] | {"model": "sdxl-9000"}}),
            ["model 'sdxl-9000' is not installed here"],
        ),
        (
            lambda home: _signed(home, lambda r: r | {"kind": "upscale"}),
            ["made by 'upscale' from another image"],
        ),
    ],
    ids=["no-recipe", "not-an-image", "no-manifest", "unknown-model", "not-from-a-prompt"],
)
def test_replay_of_bad_input_is_one_line_and_nothing_is_queued(
    tmp_path: Path, models_dir: Path, make, needles: list[str]
) -> None:
    (tmp_path / "in.png").write_bytes(make(tmp_path / "keys"))
    env = {"ATELIER_MODEL_CACHE_DIR": str(models_dir), "ATELIER_TINY_MODELS": "1"}
    result = run_atelier("replay", "in.png", cwd=tmp_path, env=env)
    _one_line_error(result, *needles)
    assert not (tmp_path / "data" / "atelier.db").exists()  # no database, no queue, no blobs were touched


def test_replay_of_a_recipe_with_a_lora_this_tenant_lacks_names_it(made: dict, tmp_path: Path) -> None:
    for lora, needle in (
        ("ink", "LoRA 'ink' is not installed here"),
        ("ink@12", "LoRA 'ink' was trained by"),
    ):
        (tmp_path / "in.png").write_bytes(
            _signed(tmp_path, lambda r, lora=lora: r | {"spec": r["spec"] | {"loras": [[lora, 0.8]]}})
        )
        before = _jobs(made["home"])
        result = run_atelier("replay", str(tmp_path / "in.png"), cwd=made["home"], env=made["env"])
        _one_line_error(result, needle)
        assert _jobs(made["home"]) == before
