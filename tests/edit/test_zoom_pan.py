"""The editing loop's actions (`jobs.editing`): zoom out, pan, make square, vary subtle/strong and the creative
upscale, from their geometry and specs through the engine on tiny models to `atelier zoom|pan|square|vary`.

The tiny presets paint at most 512² (as sd15-inpaint paints at most 1024×768): Zoom Out 2× of a 512² image is
painted scaled down into that and enlarged to 1024², with the source pasted back unchanged in the centre."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edit_support import noise_image
from PIL import Image

from engine import edit, refine
from engine.canvas import Extend
from engine.edit_requests import InpaintRequest, VariationRequest
from jobs.editing import (
    VARY_STRENGTHS,
    Lineage,
    creative_upscale_spec,
    outpaint_spec,
    pan_extend,
    parse_zoom,
    square_extend,
    variation_spec,
    zoom_extend,
)

SOURCE = Lineage(parent="jsource", prompt="a lighthouse", model="tiny", loras=(("ink", 0.5),), seed=41)


def pixels(image: Image.Image | Path) -> np.ndarray:
    opened = image if isinstance(image, Image.Image) else Image.open(image)
    return np.asarray(opened.convert("RGB")).astype(np.int16)


def smooth_image(width: int, height: int) -> Image.Image:
    """A gradient with a little noise: distances between a source and its variations mean something."""
    x, y = np.meshgrid(np.linspace(0, 255, width), np.linspace(0, 255, height))
    noise = np.random.default_rng(3).normal(0, 6, (height, width, 3))
    rgb = np.stack([x, y, 255 - x], axis=-1) + noise
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB")


def test_zoom_pan_and_square_geometry() -> None:
    assert zoom_extend((512, 512), 2) == Extend(left=256, right=256, top=256, bottom=256)
    assert zoom_extend((512, 512), 1.5) == Extend(left=128, right=128, top=128, bottom=128)
    assert zoom_extend((100, 60), 1.1) == Extend(left=5, right=5, top=3, bottom=3)
    assert pan_extend((512, 512), "left") == Extend(left=256)
    assert pan_extend((512, 384), "up") == Extend(top=192)
    assert pan_extend((512, 384), "down") == Extend(bottom=192)
    assert square_extend((512, 384)) == Extend(top=64, bottom=64)
    assert square_extend((383, 512)) == Extend(left=64, right=65)
    assert parse_zoom(" 1,5x ") == 1.5


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_zoom("3"), "between 1.1 and 2"),
        (lambda: parse_zoom("big"), "must be a number between 1.1 and 2"),
        (lambda: zoom_extend((64, 64), float("nan")), "between 1.1 and 2"),
        (lambda: pan_extend((64, 64), "sideways"), "left, right, up, down"),
        (lambda: square_extend((64, 64)), "already square"),
    ],
)
def test_bad_editing_input_is_refused_by_name(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_outpaint_specs_keep_the_lineage_on_the_family_inpainting_model(registry) -> None:
    spec = outpaint_spec(
        registry, image=noise_image(64, 64), extend=pan_extend((64, 64), "left"), lineage=SOURCE
    )
    assert (spec.model, spec.prompt, spec.seed, spec.parent) == (
        "tiny-inpaint",
        "a lighthouse",
        41,
        "jsource",
    )
    assert spec.extend == Extend(left=32)
    sdxl = Lineage(parent="j2", model="tiny-sdxl", seed=1)
    assert outpaint_spec(registry, image=noise_image(64, 64), extend=Extend(top=8), lineage=sdxl).model == (
        "tiny-sdxl-inpaint"
    )
    remixed = outpaint_spec(
        registry, image=noise_image(64, 64), extend=Extend(top=8), lineage=SOURCE, prompt="a harbour"
    )
    assert remixed.prompt == "a harbour"
    zoomed = outpaint_spec(
        registry, image=noise_image(512, 512), extend=zoom_extend((512, 512), 2), lineage=SOURCE
    )
    assert zoomed.extend == Extend(256, 256, 256, 256)  # past the model's 512², within twice that
    with pytest.raises(ValueError, match="maximum of 1024 px a side for an outpaint"):
        outpaint_spec(
            registry, image=noise_image(1024, 1024), extend=zoom_extend((1024, 1024), 2), lineage=SOURCE
        )


def test_variation_specs_keep_model_loras_seed_and_parent(registry) -> None:
    subtle = variation_spec(registry, image=noise_image(64, 64), lineage=SOURCE, strength="subtle")
    strong = variation_spec(registry, image=noise_image(64, 64), lineage=SOURCE, strength="strong")
    assert (subtle.strength, strong.strength) == (VARY_STRENGTHS["subtle"], VARY_STRENGTHS["strong"])
    assert subtle.strength < strong.strength
    assert (subtle.model, subtle.seed, subtle.parent, subtle.loras) == ("tiny", 41, "jsource", [("ink", 0.5)])
    # An upscaled source has no text-to-image model: the default varies it, without the LoRAs
    upscaled = Lineage(parent="j3", model="tiny-upscale-x4", loras=(("ink", 0.5),), seed=2)
    spec = variation_spec(registry, image=noise_image(64, 64), lineage=upscaled, tiny=True)
    assert (spec.model, spec.loras) == ("tiny", [])
    with pytest.raises(ValueError, match="subtle or strong"):
        variation_spec(registry, image=noise_image(64, 64), lineage=SOURCE, strength="wild")


def test_creative_upscale_spec(registry) -> None:
    spec = creative_upscale_spec(registry, image=noise_image(64, 72), lineage=SOURCE, tiny=True)
    assert (spec.upscaler, spec.scale, spec.model, spec.seed, spec.parent) == (
        "tiny-upscale-x4",
        4,
        "tiny",
        41,
        "jsource",
    )
    assert spec.loras == [("ink", 0.5)] and 0 < spec.strength < 0.5


def _run_outpaint(cache, registry, image: Image.Image, extend: Extend) -> Image.Image:
    spec = outpaint_spec(registry, image=image, extend=extend, lineage=SOURCE)
    request = InpaintRequest(
        mode="outpaint",
        image=image,
        mask=None,
        prompt=spec.prompt,
        negative=spec.negative,
        steps=spec.steps,
        guidance=spec.guidance,
        seed=spec.seed,
        extend=spec.extend,
    )
    [result] = edit.inpaint(cache, registry.get(spec.model), request)
    return result


def test_zoom_out_2x_of_512_gives_1024_with_the_source_whole_in_the_centre(cache, registry) -> None:
    source = noise_image(512, 512)
    result = _run_outpaint(cache, registry, source, zoom_extend(source.size, 2))
    assert result.size == (1024, 1024)
    assert np.array_equal(pixels(result)[256:768, 256:768], pixels(source))  # every pixel, full resolution
    assert pixels(result)[:128].std() > 0  # the border was painted


def test_pan_left_puts_the_source_on_the_right(cache, registry) -> None:
    source = noise_image(128, 128)
    result = _run_outpaint(cache, registry, source, pan_extend(source.size, "left"))
    assert result.size == (192, 128)
    assert np.array_equal(pixels(result)[:, 64:], pixels(source))
    assert not np.array_equal(pixels(result)[:, :64], pixels(source)[:, :64])


def _vary(cache, registry, image: Image.Image, strength: str) -> Image.Image:
    spec = variation_spec(
        registry, image=image, lineage=Lineage(parent="j", model="tiny", seed=7), strength=strength
    )
    request = VariationRequest(
        image=image,
        prompt=spec.prompt,
        negative=spec.negative,
        strength=spec.strength,
        steps=spec.steps,
        guidance=spec.guidance,
        seed=spec.seed,
    )
    [result] = edit.vary(cache, registry.get(spec.model), request)
    return result


def test_vary_subtle_stays_closer_to_the_source_than_vary_strong(cache, registry) -> None:
    source = smooth_image(64, 64)
    subtle, strong = (_vary(cache, registry, source, strength) for strength in ("subtle", "strong"))
    distance = {
        name: np.abs(pixels(image) - pixels(source)).mean()
        for name, image in [("subtle", subtle), ("strong", strong)]
    }
    assert 0 < distance["subtle"] < distance["strong"]


def test_refine_reworks_every_tile_and_keeps_the_size(cache, registry) -> None:
    assert refine.tile_starts(256, 64) == [0, 48, 96, 144, 192]
    assert refine.tile_starts(40, 64) == [0]
    image = smooth_image(160, 112)  # not a multiple of the tile: the last tiles overlap more
    done = []
    settings = refine.Refinement(prompt="stone", negative="", strength=0.5, steps=4, guidance=1.0, seed=3)
    result = refine.refine(
        cache, registry.get("tiny"), image, settings, lambda n, total, _: done.append((n, total))
    )
    assert result.size == image.size
    assert done == [(n, 6) for n in range(1, 7)]  # 3 tiles across, 2 down
    assert np.abs(pixels(result) - pixels(image)).mean() > 1  # the model drew over it


def printed(result, cwd: Path) -> list[Path]:
    assert result.returncode == 0, result.stderr
    return [Path(line) if Path(line).is_absolute() else cwd / line for line in result.stdout.split()]


def test_cli_zoom_pan_square_and_vary_print_their_images(
    atelier, worker_env, write_image, tmp_path: Path
) -> None:
    source = noise_image(512, 512)
    path = str(write_image("in.png", source))
    [zoomed] = printed(
        atelier("zoom", path, "--factor", "2", "--seed", "3", cwd=tmp_path, env=worker_env), tmp_path
    )
    assert Image.open(zoomed).size == (1024, 1024)
    assert np.array_equal(pixels(zoomed)[256:768, 256:768], pixels(source))  # PNG: no codec noise at all
    assert pixels(zoomed)[:, :128].std() > 0  # the border was painted

    [panned] = printed(atelier("pan", path, "--direction", "left", cwd=tmp_path, env=worker_env), tmp_path)
    assert Image.open(panned).size == (768, 512)
    assert np.array_equal(pixels(panned)[:, 256:], pixels(source))  # the source's pixels on the right
    [squared] = printed(
        atelier("square", str(write_image("wide.png", noise_image(64, 40))), cwd=tmp_path, env=worker_env),
        tmp_path,
    )
    assert Image.open(squared).size == (64, 64)

    [varied] = printed(
        atelier("vary", path, "--subtle", "--out", "large", cwd=tmp_path, env=worker_env), tmp_path
    )
    assert Image.open(varied).size == (512, 512)
    # Subtle against strong at 64²: at 512² the random tiny VAE's own noise drowns the difference.
    smooth = str(write_image("smooth.png", smooth_image(64, 64)))
    runs = {
        how: printed(
            atelier("vary", smooth, f"--{how}", "--seed", "9", "--out", how, cwd=tmp_path, env=worker_env),
            tmp_path,
        )[0]
        for how in ("subtle", "strong")
    }
    original = pixels(Image.open(smooth))
    assert np.abs(pixels(runs["subtle"]) - original).mean() < np.abs(pixels(runs["strong"]) - original).mean()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("zoom", "{image}", "--factor", "3"), "between 1.1 and 2"),
        (("pan", "{image}", "--direction", "sideways"), "invalid choice"),
        (("square", "{image}"), "already square"),
        (("zoom", "{image}", "--model", "nonesuch"), "unknown model"),
        (("vary", "{image}", "--subtle", "--strong"), "not allowed with"),
    ],
)
def test_cli_bad_input_exits_2_with_one_message(
    atelier, write_image, tmp_path: Path, args, message: str
) -> None:
    image = str(write_image("in.png", noise_image(64, 64)))
    result = atelier(*(arg.format(image=image) for arg in args), cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


def test_cli_upscale_creative_draws_over_the_plain_upscale(
    atelier, worker_env, write_image, tmp_path: Path
) -> None:
    path = str(write_image("in.png", smooth_image(64, 64)))
    [plain] = printed(atelier("upscale", path, "--out", "plain", cwd=tmp_path, env=worker_env), tmp_path)
    creative_run = atelier(
        "upscale", path, "--creative", "--prompt", "stone", "--out", "creative", cwd=tmp_path, env=worker_env
    )
    [creative] = printed(creative_run, tmp_path)
    assert Image.open(creative).size == Image.open(plain).size == (256, 256)
    assert np.abs(pixels(creative) - pixels(plain)).mean() > 1
    refused = atelier("upscale", path, "--prompt", "stone", cwd=tmp_path)
    assert refused.returncode == 2 and "--prompt needs --creative" in refused.stderr
