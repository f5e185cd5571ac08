"""The preset registry: parsing, defaults, tiny mapping, limits and user overrides."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.registry import Preset, Registry, UnknownModelError


def test_builtin_presets_load_in_file_order(registry: Registry) -> None:
    assert registry.names("txt2img") == [
        "sd15",
        "sdxl",
        "sdxl-turbo",
        "flux-schnell",
        "tiny",
        "tiny-strict",
        "tiny-sdxl",
        "tiny-sdxl-strict",
        "tiny-flux-strict",
        "tiny-flux",
    ]
    assert {"sd15-inpaint", "sdxl-inpaint", "flux-fill"} <= set(registry.names("inpaint"))
    assert {"realesrgan-x4", "realesrgan-x2"} <= set(registry.names("upscale"))
    assert {"gfpgan-1.4", "codeformer"} <= set(registry.names("face"))
    turbo = registry.get("sdxl-turbo")
    assert (turbo.family, turbo.source, turbo.default_steps, turbo.default_guidance) == (
        "sdxl",
        "stabilityai/sdxl-turbo",
        4,
        0.0,
    )
    assert registry.get("sd15").source == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert registry.get("flux-schnell").multiple_of == 16
    tiny = registry.get("tiny")
    assert (tiny.default_width, tiny.default_height, tiny.default_steps, tiny.max_side) == (64, 64, 4, 512)
    assert tiny.is_tiny and tiny.tiny is None


def test_every_real_preset_names_a_tiny_counterpart_of_its_family(registry: Registry) -> None:
    for name in registry.names():
        preset = registry.get(name)
        if preset.is_tiny:
            continue
        counterpart = registry.get(preset.tiny)
        assert counterpart.is_tiny
        assert (counterpart.role, counterpart.family, counterpart.pipeline) == (
            preset.role,
            preset.family,
            preset.pipeline,
        )


def test_resolve_defaults_and_tiny_mapping(registry: Registry) -> None:
    assert registry.resolve(None).name == "sd15"
    assert registry.resolve(None, tiny=True).name == "tiny"
    assert registry.resolve("sdxl").name == "sdxl"
    assert registry.resolve("sdxl-turbo", tiny=True).name == "tiny-sdxl"
    assert registry.resolve("flux-schnell", tiny=True).name == "tiny-flux"
    assert registry.resolve("tiny-flux", tiny=True).name == "tiny-flux"
    assert registry.default("txt2img") == "sd15"


def test_unknown_models_list_the_known_ones(registry: Registry) -> None:
    with pytest.raises(
        UnknownModelError, match="unknown txt2img model 'sd3'; known: sd15, sdxl, sdxl-turbo"
    ) as info:
        registry.resolve("sd3")
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnknownModelError, match=r"known models: sd15, .*tiny-flux"):
        registry.get("midjourney")
    with pytest.raises(UnknownModelError, match="no default model for role 'lora-trainer'"):
        registry.resolve(None, role="lora-trainer")
    with pytest.raises(UnknownModelError, match="unknown upscale model 'sd15'"):
        registry.resolve("sd15", role="upscale")


def test_an_unknown_model_name_of_any_length_makes_a_message_that_fits_a_chat_reply(
    registry: Registry,
) -> None:
    for lookup in (registry.get, registry.resolve):
        with pytest.raises(UnknownModelError) as info:
            lookup("m" * 5000)
        message = str(info.value)
        assert len(message) < 1000 and "\n" not in message and "'mmmmm" in message and "…'" in message, (
            message
        )


@pytest.mark.parametrize(
    ("name", "limits", "message"),
    [
        ("tiny", {"width": 1000}, "width 1000 exceeds tiny's limit of 512"),
        ("sd15", {"width": 1004}, "width 1004 is not a multiple of 8"),
        ("sd15", {"height": 4096}, "height 4096 exceeds sd15's limit of 1024"),
        ("sd15", {"height": 32}, "height 32 is below the minimum of 64"),
        ("flux-schnell", {"width": 1032}, "width 1032 is not a multiple of 16"),
        (
            "sd15",
            {"width": 1024, "height": 1024},
            "1024x1024 is 1048576 pixels, more than sd15's limit of 786432",
        ),
        ("sd15", {"steps": 80}, r"steps must be between 1 and 75 \(got 80\)"),
        ("sd15", {"steps": 0}, r"steps must be between 1 and 75 \(got 0\)"),
        ("sd15", {"count": 9}, r"count must be between 1 and 4 \(got 9\)"),
        ("sd15", {"guidance": 31.0}, r"guidance must be between 0 and 30 \(got 31\)"),
        ("flux-schnell", {"negative": "text"}, "flux-schnell does not use a negative prompt"),
    ],
)
def test_check_names_the_broken_limit(registry: Registry, name: str, limits: dict, message: str) -> None:
    preset = registry.get(name)
    request = {
        "width": preset.default_width,
        "height": preset.default_height,
        "steps": 4,
        "count": 1,
    } | limits
    with pytest.raises(ValueError, match=message):
        preset.check(**request)


def test_check_accepts_the_limits_themselves(registry: Registry) -> None:
    registry.get("sd15").check(width=1024, height=768, steps=75, count=4, guidance=30.0, negative="blurry")
    registry.get("tiny-flux").check(width=512, height=512, steps=1, count=1)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_user_file_overrides_fields_and_adds_presets(tmp_path: Path) -> None:
    extra = _write(
        tmp_path / "models.toml",
        """
        [roles]
        txt2img = "dreamshaper"

        [presets.sd15]
        source = "/models/sd15"
        variant = ""
        max_count = 8

        [presets.dreamshaper]
        role = "txt2img"
        family = "sd15"
        source = "Lykon/dreamshaper-8"
        pipeline = "StableDiffusionPipeline"
        default_width = 512
        default_height = 768
        max_side = 1024
        max_pixels = 786432
        default_steps = 30
        max_steps = 60
        default_guidance = 7
        max_count = 2
        tiny = "tiny"
        """,
    )
    registry = Registry.load(extra)
    sd15 = registry.get("sd15")
    assert (sd15.source, sd15.variant, sd15.max_count, sd15.default_steps) == ("/models/sd15", None, 8, 25)
    dreamshaper = registry.resolve(None)
    assert dreamshaper.name == "dreamshaper"
    assert dreamshaper.default_guidance == 7.0 and isinstance(dreamshaper.default_guidance, float)
    assert registry.resolve(None, tiny=True).name == "tiny"
    assert registry.names()[-1] == "dreamshaper"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[presets.sd15]\nsteps = 5\n", "preset 'sd15': unknown field\\(s\\) steps"),
        (
            "[presets.new]\nrole = 'txt2img'\nfamily = 'sd15'\n",
            "preset 'new': missing field\\(s\\) source, pipeline",
        ),
        ("[presets.sd15]\nmax_steps = 'many'\n", "preset 'sd15': max_steps must be of type int"),
        ("[presets.sd15]\ntiny = 'tiny-xl'\n", "its tiny counterpart 'tiny-xl' is not a preset"),
        ("[presets.sd15]\ntiny = 'tiny-flux'\n", "must be a tiny preset of role 'txt2img' and family 'sd15'"),
        (
            "[presets.sd15]\nmax_steps = 10\n",
            "preset 'sd15': its defaults break its own limits: steps must be",
        ),
        ("[roles]\ntxt2img = 'sd9'\n", "default txt2img model 'sd9' is not a txt2img preset"),
        ("[model.sd15]\nsource = 'x'\n", "unknown table\\(s\\) model"),
        ("[presets.sd15\n", "models.toml: "),
    ],
)
def test_user_file_errors_say_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Registry.load(_write(tmp_path / "models.toml", text))


def test_preset_is_frozen(registry: Registry) -> None:
    preset: Preset = registry.get("tiny")
    with pytest.raises(AttributeError):
        preset.max_count = 100  # type: ignore[misc]


def test_registry_and_requests_import_without_torch() -> None:
    code = (
        "import sys, engine.registry, engine.generate\n"
        "heavy = {'torch', 'diffusers', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
