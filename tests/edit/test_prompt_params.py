"""Prompt parameters and styles (`jobs.prompt_params`, `jobs.styles`): the flags as people type them, the specs
they make, the refusals where a model can't do them, and `--tile` drawn for real on the tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bots.commands import CommandError, parse_prompt
from engine.engine import Engine
from engine.generate import TextToImage
from jobs.prompt_params import chaos_guidance, image_weight_strength, stylize_guidance
from jobs.specs import imagine_spec
from jobs.styles import BUILT_IN, Style, check_style


def test_flags_parse_with_their_aliases() -> None:
    parsed = parse_prompt("a fox --tile --style photo --c 40 --s 250 --iw 1.5 --seed 3")
    assert parsed.prompt == "a fox"
    assert parsed.options == {
        "tile": True,
        "style": "photo",
        "chaos": 40,
        "stylize": 250,
        "iw": 1.5,
        "seed": 3,
    }
    with pytest.raises(CommandError, match="--chaos needs a whole number"):
        parse_prompt("a fox --chaos lots")


def test_style_expands_into_the_recorded_prompt_and_negative(registry) -> None:
    spec = imagine_spec(registry, prompt="a fox", negative="blur", style="Watercolor", tiny=True)
    assert spec.prompt == "watercolor painting of a fox, soft washes, paper texture"
    assert spec.negative == "blur, " + BUILT_IN["watercolor"].negative
    assert spec.style == "watercolor"
    own = {"ink": Style("ink", "sumi-e ink painting", "colour")}
    spec = imagine_spec(registry, prompt="a fox", style="ink", styles=own, tiny=True)
    assert (spec.prompt, spec.negative) == ("a fox, sumi-e ink painting", "colour")
    with pytest.raises(ValueError, match="unknown style 'nope'; known styles: anime, cinematic"):
        imagine_spec(registry, prompt="a fox", style="nope", tiny=True)


def test_check_style_refuses_bad_names_and_empty_templates() -> None:
    assert check_style(" Ink ", "ink of {prompt}", "").name == "ink"
    with pytest.raises(ValueError, match="a style name is"):
        check_style("has space", "x", "")
    with pytest.raises(ValueError, match="needs a prompt template"):
        check_style("ink", "  ", "")


def test_stylize_chaos_and_tile_map_onto_the_model_or_are_refused(registry) -> None:
    assert stylize_guidance(100, 7.5, "m") == 7.5
    assert stylize_guidance(0, 7.5, "m") == 11.25
    assert stylize_guidance(1000, 7.5, "m") == 3.75
    assert imagine_spec(registry, prompt="a fox", stylize=1000, tiny=True).guidance == 3.75
    assert image_weight_strength(1) == 0.6 and image_weight_strength(2) == 0.3
    assert chaos_guidance(7.5, 0, 5) == 7.5
    spread = {chaos_guidance(7.5, 100, seed) for seed in range(20)}
    assert len(spread) == 20 and min(spread) >= 3.75 and max(spread) <= 11.25
    spec = imagine_spec(registry, prompt="a fox", chaos=60, tile=True, count=2, tiny=True)
    assert (spec.chaos, spec.tile, spec.request().tile) == (60, True, True)
    refusals = [
        ({"stylize": 200, "guidance": 5.0}, "give --stylize or --guidance, not both"),
        ({"stylize": 2000}, "--stylize must be a whole number from 0 to 1000"),
        ({"stylize": 50, "model": "tiny-flux"}, "tiny-flux takes no guidance"),
        ({"chaos": 101}, "--chaos must be a whole number from 0 to 100"),
        ({"chaos": 5, "model": "tiny-flux"}, "tiny-flux has no guidance to vary"),
        ({"tile": True, "model": "tiny-flux"}, "tiny-flux can't tile seamlessly"),
    ]
    for options, message in refusals:
        with pytest.raises(ValueError, match=message):
            imagine_spec(registry, prompt="a fox", tiny=True, **options)
    with pytest.raises(ValueError, match="--iw must be a number from 0 to 2"):
        image_weight_strength(3)


def _seam(image) -> tuple[float, float]:
    """Mean difference across the wrap-around seam (last column to first) and between neighbouring columns."""
    pixels = np.asarray(image.convert("RGB")).astype(np.float32)
    wrap = np.abs(pixels[:, -1] - pixels[:, 0]).mean()
    inside = np.abs(np.diff(pixels, axis=1)).mean()
    return float(wrap), float(inside)


def test_tile_output_wraps_seamlessly(registry, edit_models: Path) -> None:
    engine = Engine(registry, edit_models, device="cpu")
    preset = registry.get("tiny")
    results = {}
    for tile in (False, True):
        request = TextToImage.for_preset(preset, "a brick wall", seed=4, steps=4, width=64, height=64)
        [image] = engine.txt2img(preset, TextToImage(**{**request.__dict__, "tile": tile}))
        results[tile] = _seam(image)
    wrap, inside = results[True]
    assert wrap <= 1.5 * inside  # the wrap seam looks like any pair of neighbouring columns
    untiled_wrap, _ = results[False]
    assert untiled_wrap > 1.5 * wrap, results  # without --tile the two edges are unrelated (32 vs 18 here)
