"""Model presets: what each named model is, where its weights live, and the limits a request must respect.

The chat front-ends import this module to validate commands before anything is queued, so it must stay
free of torch and diffusers. Presets come from the built-in `models.toml`, optionally merged with a user file.
"""

from __future__ import annotations

import tomllib
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

BUILTIN_MODELS = Path(__file__).with_name("models.toml")

MIN_SIDE = 64
"""Smallest width or height accepted by any preset: below it a latent is a handful of pixels."""


class UnknownModelError(ValueError):
    """A model name the registry does not know; the message lists the names it does know."""


@dataclass(frozen=True)
class Preset:
    """One named model and its limits. `check` is the single place request sizes are validated."""

    name: str
    role: str
    family: str
    source: str
    pipeline: str
    default_width: int
    default_height: int
    max_side: int
    max_pixels: int
    default_steps: int
    max_steps: int
    default_guidance: float
    max_count: int
    tiny: str | None = None
    multiple_of: int = 8
    max_guidance: float = 30.0
    supports_negative: bool = True
    variant: str | None = None
    safety_checker: bool = False  # the weights include a safety checker (engine.safety); SD 1.5 has one
    safety_adjustment: float = 0.0  # added to the checker's scores: higher flags more (diffusers uses 0.0)
    safety_threshold: float = 0.5  # a safety classifier's score that flags (engine.classifiers)
    image_classifier: str | None = None  # the image-safety preset for its outputs (else the role's)
    control: str | None = None  # a ControlNet's condition (canny, depth, openpose) or an annotator's output
    weight_name: str | None = None  # an IP-Adapter's weight file in its repository: models/x.safetensors

    def __post_init__(self) -> None:
        for field in ("max_side", "max_pixels", "max_steps", "max_count", "multiple_of"):
            if getattr(self, field) < 1:
                raise ValueError(
                    f"preset {self.name!r}: {field} must be at least 1 (got {getattr(self, field)})"
                )
        try:
            self.check(
                width=self.default_width,
                height=self.default_height,
                steps=self.default_steps,
                count=1,
                guidance=self.default_guidance,
            )
        except ValueError as error:
            raise ValueError(f"preset {self.name!r}: its defaults break its own limits: {error}") from None

    @property
    def is_tiny(self) -> bool:
        """Whether this preset is built from configs with random weights instead of loaded from real weights."""
        return self.source == "tiny"

    def check(
        self,
        *,
        width: int,
        height: int,
        steps: int,
        count: int,
        guidance: float | None = None,
        negative: str = "",
    ) -> None:
        """Raise ValueError naming the first limit this request breaks; return None when it fits."""
        for side, value in (("width", width), ("height", height)):
            if value < MIN_SIDE:
                raise ValueError(f"{side} {value} is below the minimum of {MIN_SIDE}")
            if value > self.max_side:
                raise ValueError(f"{side} {value} exceeds {self.name}'s limit of {self.max_side}")
            if value % self.multiple_of:
                raise ValueError(f"{side} {value} is not a multiple of {self.multiple_of}")
        if width * height > self.max_pixels:
            raise ValueError(
                f"{width}x{height} is {width * height} pixels, more than {self.name}'s limit of "
                f"{self.max_pixels} pixels"
            )
        if not 1 <= steps <= self.max_steps:
            raise ValueError(f"steps must be between 1 and {self.max_steps} (got {steps})")
        if not 1 <= count <= self.max_count:
            raise ValueError(f"count must be between 1 and {self.max_count} (got {count})")
        if guidance is not None and not 0 <= guidance <= self.max_guidance:
            raise ValueError(f"guidance must be between 0 and {self.max_guidance:g} (got {guidance:g})")
        if negative and not self.supports_negative:
            raise ValueError(f"{self.name} does not use a negative prompt; leave it out")


_FIELD_TYPES = {field.name: field.type for field in fields(Preset)}
_REQUIRED = [field.name for field in fields(Preset) if field.default is MISSING and field.name != "name"]


class Registry:
    """The presets known to this installation, and the default preset of each role."""

    def __init__(self, presets: dict[str, Preset], defaults: dict[str, str]) -> None:
        self._presets = dict(presets)
        self._defaults = dict(defaults)
        self._validate()

    @classmethod
    def load(cls, extra: Path | None = None) -> Registry:
        """Read the built-in models.toml, then merge `extra` (a user TOML file) over it."""
        tables = _read(BUILTIN_MODELS)
        if extra is not None:
            tables = _merge(tables, _read(Path(extra)))
        presets = {name: _preset(name, table) for name, table in tables["presets"].items()}
        return cls(presets, tables["roles"])

    def get(self, name: str) -> Preset:
        """The preset called `name`, of any role."""
        try:
            return self._presets[name]
        except KeyError:
            raise UnknownModelError(
                f"unknown model {_quoted(name)}; known models: {', '.join(self.names())}"
            ) from None

    def resolve(self, name: str | None, *, role: str = "txt2img", tiny: bool = False) -> Preset:
        """The preset to run for a request: `name`, or the role's default when None.

        With `tiny` (ATELIER_TINY_MODELS=1) a real preset is swapped for its tiny counterpart, so the whole
        service runs on CPU-sized models without changing which names users may type.
        """
        if name is None:
            if role not in self._defaults:
                raise UnknownModelError(
                    f"no default model for role {role!r}; roles with one: {', '.join(self._defaults)}"
                )
            name = self._defaults[role]
        preset = self._presets.get(name)
        if preset is None or preset.role != role:
            raise UnknownModelError(
                f"unknown {role} model {_quoted(name)}; known: {', '.join(self.names(role))}"
            )
        if tiny and not preset.is_tiny:
            if preset.tiny is None:
                raise ValueError(f"model {name!r} has no tiny counterpart: set `tiny` in its preset")
            preset = self._presets[preset.tiny]
        return preset

    def image_classifier(self, preset: Preset) -> Preset:
        """The image-safety classifier run on `preset`'s outputs: its own `image_classifier` or the role's
        default, and its tiny counterpart when `preset` is tiny (a tiny model's images need no real weights)."""
        name = preset.image_classifier or self._defaults.get("image-safety")
        if name is None:
            raise UnknownModelError("no image-safety classifier: set [roles] image-safety")
        return self.resolve(name, role="image-safety", tiny=preset.is_tiny)

    def names(self, role: str | None = None) -> list[str]:
        """Preset names in file order, all of them or only those of `role`."""
        return [name for name, preset in self._presets.items() if role is None or preset.role == role]

    def default(self, role: str = "txt2img") -> str:
        """The name of the role's default preset."""
        return self.resolve(None, role=role).name

    def _validate(self) -> None:
        for preset in self._presets.values():
            if preset.tiny is None:
                continue
            counterpart = self._presets.get(preset.tiny)
            if counterpart is None:
                raise ValueError(
                    f"preset {preset.name!r}: its tiny counterpart {preset.tiny!r} is not a preset"
                )
            if not counterpart.is_tiny or (counterpart.role, counterpart.family) != (
                preset.role,
                preset.family,
            ):
                raise ValueError(
                    f"preset {preset.name!r}: tiny counterpart {preset.tiny!r} must be a tiny preset of role "
                    f"{preset.role!r} and family {preset.family!r}"
                )
        for preset in self._presets.values():
            named = self._presets.get(preset.image_classifier or "")
            if preset.image_classifier and (named is None or named.role != "image-safety"):
                raise ValueError(
                    f"preset {preset.name!r}: image_classifier {preset.image_classifier!r} is not an "
                    "image-safety preset"
                )
        for role, name in self._defaults.items():
            preset = self._presets.get(name)
            if preset is None or preset.role != role:
                raise ValueError(f"default {role} model {name!r} is not a {role} preset")


def _read(path: Path) -> dict[str, dict[str, Any]]:
    with path.open("rb") as file:
        try:
            data = tomllib.load(file)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path}: {error}") from None
    unknown = set(data) - {"roles", "presets"}
    if unknown:
        raise ValueError(
            f"{path}: unknown table(s) {', '.join(sorted(unknown))}; expected [roles] and [presets.<name>]"
        )
    return {"roles": data.get("roles", {}), "presets": data.get("presets", {})}


def _merge(base: dict[str, dict[str, Any]], extra: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    presets = {name: dict(table) for name, table in base["presets"].items()}
    for name, table in extra["presets"].items():
        presets[name] = {**presets.get(name, {}), **table}
    return {"roles": {**base["roles"], **extra["roles"]}, "presets": presets}


def _preset(name: str, table: dict[str, Any]) -> Preset:
    unknown = (set(table) - set(_FIELD_TYPES)) | ({"name"} & set(table))
    if unknown:
        raise ValueError(f"preset {name!r}: unknown field(s) {', '.join(sorted(unknown))}")
    missing = [field for field in _REQUIRED if field not in table]
    if missing:
        raise ValueError(f"preset {name!r}: missing field(s) {', '.join(missing)}")
    values = {field: _coerce(name, field, value) for field, value in table.items()}
    return Preset(name=name, **values)


def _coerce(preset: str, field: str, value: Any) -> Any:
    kind = _FIELD_TYPES[field]
    if kind == "str | None":
        if not isinstance(value, str):
            raise ValueError(f"preset {preset!r}: {field} must be a string (got {value!r})")
        return value or None
    if kind == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    expected = {"str": str, "int": int, "bool": bool, "float": float}[kind]
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ValueError(f"preset {preset!r}: {field} must be of type {kind} (got {value!r})")
    return value


def _quoted(name: str, limit: int = 60) -> str:
    """A name someone typed, quoted and cut for a refusal: a 5,000-character `--model` made a message too long
    for a chat reply, so the user heard nothing."""
    return repr(name if len(name) <= limit else name[: limit - 1] + "…")
