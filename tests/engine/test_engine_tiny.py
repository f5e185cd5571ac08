"""Tiny presets: built once, reproducibly, published atomically, and loaded like real weights."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import diffusers
import torch

from engine.registry import Registry
from engine.tiny import STAMP, build, ensure_built
from engine.tiny_tokenizers import clip_tokenizer, t5_tokenizer


def test_a_built_preset_is_reused_not_rebuilt(registry: Registry, tiny_cache: Path) -> None:
    preset = registry.get("tiny")
    stamp = tiny_cache / "tiny" / STAMP
    before = stamp.stat().st_mtime_ns
    assert ensure_built(preset, tiny_cache) == tiny_cache / "tiny"
    assert stamp.stat().st_mtime_ns == before
    names = {path.name for path in tiny_cache.iterdir()}
    assert {"tiny", "tiny-flux", "tiny-sdxl"} <= names  # (other tests may have built more presets here)
    assert not [name for name in names if name.startswith(".")]  # no staging directory left behind


def test_a_stale_build_is_replaced(registry: Registry, tmp_path: Path) -> None:
    preset = registry.get("tiny")
    target = tmp_path / "tiny"
    target.mkdir()
    (target / STAMP).write_text(json.dumps({"build": 0}))
    (target / "leftover.bin").write_bytes(b"old")
    ensure_built(preset, tmp_path)
    assert not (target / "leftover.bin").exists()
    assert json.loads((target / STAMP).read_text())["build"] > 0
    assert [path.name for path in tmp_path.iterdir()] == ["tiny"]


def test_racing_builders_leave_one_complete_model(registry: Registry, tmp_path: Path) -> None:
    preset = registry.get("tiny-sdxl")
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def build_it() -> None:
        start.wait()
        try:
            ensure_built(preset, tmp_path)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=build_it) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [path.name for path in tmp_path.iterdir()] == ["tiny-sdxl"]  # no staging directories left
    pipeline = diffusers.StableDiffusionXLPipeline.from_pretrained(tmp_path / "tiny-sdxl")
    assert pipeline.text_encoder_2 is not None


def test_builds_are_reproducible_and_leave_the_global_rng_alone(registry: Registry) -> None:
    preset = registry.get("tiny-flux")
    state = torch.random.get_rng_state()
    first, second = build(preset), build(preset)
    assert torch.equal(torch.random.get_rng_state(), state)
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        one, two = getattr(first, name).state_dict(), getattr(second, name).state_dict()
        assert one.keys() == two.keys()
        assert all(torch.equal(one[key], two[key]) for key in one)


def test_builds_on_two_threads_at_once_are_the_same_as_alone(registry: Registry) -> None:
    """A worker builds on several threads (a job's pipeline, the prompt classifier): the global generator they
    share must not interleave their draws (engine.building), or `tiny` differs from `tiny-strict` run by run."""
    alone = build(registry.get("tiny")).unet.state_dict()
    built: dict[str, diffusers.DiffusionPipeline] = {}
    start = threading.Barrier(4)

    def build_one(name: str) -> None:
        start.wait()
        built[name] = build(registry.get(name))

    threads = [
        threading.Thread(target=build_one, args=(n,)) for n in ("tiny", "tiny-strict", "tiny-sdxl", "tiny")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in ("tiny", "tiny-strict"):
        state = built[name].unet.state_dict()
        assert all(torch.equal(alone[key], state[key]) for key in alone), name


def test_tokenizers_survive_saving_and_reloading(tiny_cache: Path) -> None:
    prompt = "A red fox, jumping over 2 lazy dogs!"
    flux = diffusers.FluxPipeline.from_pretrained(tiny_cache / "tiny-flux")
    clip, t5 = clip_tokenizer(), t5_tokenizer()
    assert flux.tokenizer(prompt).input_ids == clip(prompt).input_ids
    assert flux.tokenizer_2(prompt).input_ids == t5(prompt).input_ids
    assert flux.tokenizer.model_max_length == 77
    # Every character is known: nothing maps to the unknown token.
    assert t5.unk_token_id not in t5(prompt).input_ids
    words = "a red fox jumping over 2 lazy dogs"
    assert clip.decode(clip(words.upper()).input_ids, skip_special_tokens=True) == words


def test_schedulers_use_steps_offset_one(tiny_cache: Path) -> None:
    for name in ("tiny", "tiny-sdxl"):
        config = json.loads((tiny_cache / name / "scheduler" / "scheduler_config.json").read_text())
        assert config["steps_offset"] == 1
