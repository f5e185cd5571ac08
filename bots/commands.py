"""Platform-neutral parsing of what people type: prompt flags such as `--ar 16:9 --seed 7 --no text`.

Discord and Slack both hand a prompt string (plus, on Discord, typed options) to `parse_prompt`, which splits the
Midjourney-style flags from the text. Flags and explicit options mean the same thing; an option given both ways
must agree. Errors are `CommandError`s whose message is shown to the user as is.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from jobs.text import check_name, check_text, shown


class CommandError(ValueError):
    """Something the user typed is wrong; the message says what, in words they can act on."""


# flag -> (option name, kind). Aliases map to the same option.
FLAGS: dict[str, tuple[str, str]] = {
    "--ar": ("aspect", "text"),
    "--aspect": ("aspect", "text"),
    "--size": ("size", "text"),
    "--seed": ("seed", "int"),
    "--steps": ("steps", "int"),
    "--count": ("count", "int"),
    "--n": ("count", "int"),
    "--model": ("model", "text"),
    "--guidance": ("guidance", "float"),
    "--cfg": ("guidance", "float"),
    "--no": ("negative", "text"),
    "--lora": ("lora", "list"),
    "--style": ("style", "text"),
    "--tile": ("tile", "switch"),
    "--chaos": ("chaos", "int"),
    "--c": ("chaos", "int"),
    "--stylize": ("stylize", "int"),
    "--s": ("stylize", "int"),
    "--iw": ("iw", "float"),
    "--control": ("control", "text"),  # guided generation (jobs.guided)
    "--control-weight": ("control_weight", "float"),
    "--hires": ("hires", "float"),
    "--sw": ("sref_weight", "float"),
    "--cw": ("cref_weight", "float"),
}
LANE_FLAGS = {"--relax": "relax", "--fast": "fast"}
"""The lane a request asks for (jobs.relax), read by `parse_prompt` into `ParsedPrompt.lane`, not into options."""

IMAGE_PROMPT_ONLY = "--iw weighs an image prompt against the text: attach an image, or remove --iw"


@dataclass
class ParsedPrompt:
    prompt: str
    options: dict[str, object] = field(default_factory=dict)
    lane: str | None = None  # "relax" or "fast" from --relax / --fast; None: the member's default


def prompt_lane(text: str) -> str | None:
    """The lane `--relax` or `--fast` in `text` asks for (None: neither). A prompt that does not parse gives None
    here: the spec's own parse refuses it with the reason."""
    try:
        return parse_prompt(text, allow_empty=True).lane
    except CommandError:
        return None


# What shlex splits on, and no more (a no-break space is part of a word).
_SHELL_WHITESPACE = re.compile(r"[ \t\r\n]+")


def prompt_words(text: str) -> list[str]:
    """The prompt's words as `shlex.split` reads them (quotes group, a backslash escapes); without a quote or a
    backslash, the same split done in a regular expression, 15× faster (it runs before each acknowledgement)."""
    if "'" in text or '"' in text or "\\" in text:
        return shlex.split(text)
    return [word for word in _SHELL_WHITESPACE.split(text) if word]


def parse_prompt(text: str, *, allow_empty: bool = False) -> ParsedPrompt:
    """Split `text` into the prompt and its flags. `--no` takes every word up to the next flag.

    A prompt of only flags is refused unless `allow_empty` (an edit such as removal needs no words). A control
    character other than newline and tab (a NUL, an escape) is refused, naming it (`jobs.text`): not stripped,
    so what runs is what was typed."""
    try:
        check_text("prompt", text)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    try:
        words = prompt_words(text)
    except ValueError as exc:
        raise CommandError(f"could not read the prompt: {exc}") from None
    kept: list[str] = []
    options: dict[str, object] = {}
    lane: str | None = None
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("--"):
            kept.append(word)
            i += 1
            continue
        flag = word.lower()
        if (
            not word.isprintable() or len(word) > 40
        ):  # a quoted "--" word may hold a line break, or go on and on
            word = shown(word)
        if flag in LANE_FLAGS:
            if lane is not None and lane != LANE_FLAGS[flag]:
                raise CommandError("--relax and --fast ask for different lanes: choose one")
            lane = LANE_FLAGS[flag]
            i += 1
            continue
        if flag not in FLAGS:
            known = ", ".join(sorted([*FLAGS, *LANE_FLAGS]))
            raise CommandError(f"unknown flag {word}; known flags: {known}")
        name, kind = FLAGS[flag]
        values: list[str] = []
        i += 1
        if kind == "switch":  # --tile takes no value
            options[name] = True
            continue
        while i < len(words) and not words[i].startswith("--"):
            values.append(words[i])
            i += 1
            if kind != "text" or name != "negative":
                break  # only --no takes several words
        if not values:
            raise CommandError(f"{word} needs a value")
        _store(options, word, name, kind, " ".join(values))
    prompt = " ".join(kept).strip()
    if not prompt and not allow_empty:
        raise CommandError("the prompt is only flags: add words that describe the image")
    return ParsedPrompt(prompt, options, lane)


def merge_options(parsed: ParsedPrompt, explicit: dict[str, object]) -> dict[str, object]:
    """Combine flags from the prompt with options the platform passed separately; a conflict is an error."""
    merged = dict(parsed.options)
    for name, value in explicit.items():
        if value is None:
            continue
        if name == "lora":
            merged["lora"] = [*merged.get("lora", []), *value]  # type: ignore[list-item]
        elif name in merged and merged[name] != value:
            raise CommandError(f"{name} is given twice with different values ({merged[name]} and {value})")
        else:
            merged[name] = value
    return merged


def parse_lora(text: str) -> tuple[str, float]:
    """`"name:0.8"` → ("name", 0.8); a bare name has weight 1."""
    name, _, weight = text.partition(":")
    if not name:
        raise CommandError(f"a LoRA needs a name, as in name:0.8 (got {shown(text)})")
    try:
        check_name("LoRA name", name)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    try:
        value = float(weight) if weight else 1.0
    except ValueError:
        raise CommandError(f"the LoRA weight in {shown(text)} is not a number") from None
    if not -2.0 <= value <= 2.0:
        raise CommandError(f"the LoRA weight must be between -2 and 2 (got {value})")
    return name, value


def _store(options: dict[str, object], word: str, name: str, kind: str, raw: str) -> None:
    if kind == "int":
        try:
            value: object = int(raw)
        except ValueError:
            raise CommandError(f"{word} needs a whole number (got {shown(raw)})") from None
    elif kind == "float":
        try:
            value = float(raw)
        except ValueError:
            raise CommandError(f"{word} needs a number (got {shown(raw)})") from None
    elif kind == "list":
        options.setdefault(name, [])
        options[name].append(parse_lora(raw))  # type: ignore[union-attr]
        return
    else:
        value = raw
    if name in options and options[name] != value:
        raise CommandError(f"{word} is given twice with different values")
    options[name] = value
