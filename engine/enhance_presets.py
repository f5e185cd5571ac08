"""Choosing upscale and face presets, and the defaults of enhancement requests. Torch-free, so front-ends can
validate a request before anything is enqueued.

An upscale preset's `family` is its factor ("x2", "x4"); a face preset's `pipeline` names its architecture
(GFPGAN, CodeFormer). The loader checks both against the weights.
"""

from __future__ import annotations

from engine.registry import Preset, Registry, UnknownModelError

SCALES = (2, 4)
"""Upscale factors the commands offer."""

DEFAULT_FIDELITY = 0.5
"""CodeFormer's fidelity weight: 0 trusts the model's face prior most, 1 keeps closest to the input face."""

FIDELITY_ARCHITECTURES = ("CodeFormer",)


def upscale_factor(preset: Preset) -> int:
    """An upscale preset's factor, read from its family ("x2" → 2)."""
    family = preset.family
    if not (family.startswith("x") and family[1:].isdigit() and int(family[1:]) >= 1):
        raise ValueError(
            f"upscale preset {preset.name!r}: family must be its factor, e.g. x4 (got {family!r})"
        )
    return int(family[1:])


def upscaler_for(registry: Registry, *, scale: int | None, model: str | None, tiny: bool = False) -> Preset:
    """The upscale preset to run: `model` when named (its factor must equal `scale` when both are given), else
    the role's default when it has that factor, else the first upscale preset of that factor in file order."""
    if scale is not None and scale not in SCALES:
        raise ValueError(f"scale must be {' or '.join(map(str, SCALES))} (got {scale})")
    if model is not None:
        preset = registry.resolve(model, role="upscale", tiny=tiny)
        if scale is not None and upscale_factor(preset) != scale:
            raise ValueError(f"model {model!r} upscales x{upscale_factor(preset)}, not x{scale}")
        return preset
    default = registry.resolve(None, role="upscale")
    if scale is None or upscale_factor(default) == scale:
        return registry.resolve(default.name, role="upscale", tiny=tiny)
    for name in registry.names("upscale"):
        preset = registry.get(name)
        if not preset.is_tiny and upscale_factor(preset) == scale:
            return registry.resolve(name, role="upscale", tiny=tiny)
    raise UnknownModelError(f"no upscale model for x{scale}; known: {', '.join(registry.names('upscale'))}")


def face_restorer_for(
    registry: Registry, *, model: str | None, fidelity: float | None = None, tiny: bool = False
) -> Preset:
    """The face preset to run (`model`, or the role's default); a fidelity is refused for a restorer that has
    none, rather than silently ignored."""
    preset = registry.resolve(model, role="face", tiny=tiny)
    if fidelity is not None:
        if preset.pipeline not in FIDELITY_ARCHITECTURES:
            raise ValueError(
                f"fidelity applies to CodeFormer only; {model or preset.name} has no fidelity setting"
            )
        if not 0 <= fidelity <= 1:
            raise ValueError(f"fidelity must be between 0 and 1 (got {fidelity:g})")
    return preset
