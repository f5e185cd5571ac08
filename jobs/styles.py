"""Styles: named prompt templates with a negative prompt (`--style NAME`, or a member's default style).

The built-in set below is every server's; admins add their own (`storage.editing_models.TenantStyle`), which
take precedence over a built-in of the same name. `{prompt}` in a template is replaced by what was typed; a
template without it gets the prompt in front. The expansion is the prompt the job records and runs, so a
result's prompt says exactly what the model was given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from jobs.text import check_text

MAX_STYLE_NAME = 32
MAX_TEMPLATE_CHARS = 500
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str  # the template, with {prompt} where the typed prompt goes
    negative: str = ""

    def apply(self, prompt: str, negative: str) -> tuple[str, str]:
        """The prompt and negative prompt this style makes of `prompt` and `negative`."""
        expanded = (
            self.prompt.replace("{prompt}", prompt)
            if "{prompt}" in self.prompt
            else f"{prompt}, {self.prompt}"
        )
        negatives = ", ".join(part for part in (negative.strip(), self.negative) if part)
        return expanded.strip(), negatives


BUILT_IN: dict[str, Style] = {
    style.name: style
    for style in (
        Style(
            "photo",
            "{prompt}, photograph, 35mm, natural light, sharp focus",
            "illustration, painting, drawing, cartoon",
        ),
        Style(
            "cinematic",
            "cinematic still of {prompt}, dramatic lighting, shallow depth of field, film grain",
            "cartoon, flat colours",
        ),
        Style(
            "anime",
            "anime illustration of {prompt}, clean line art, vibrant colours",
            "photo, realistic, 3d render",
        ),
        Style(
            "watercolor",
            "watercolor painting of {prompt}, soft washes, paper texture",
            "photo, 3d render, harsh lines",
        ),
        Style(
            "pixel-art", "pixel art of {prompt}, 16-bit, limited palette", "blurry, photo, smooth gradients"
        ),
        Style(
            "line-art", "black and white line drawing of {prompt}, ink, clean lines", "colour, shading, photo"
        ),
    )
}


def check_style(name: str, prompt: str, negative: str) -> Style:
    """A style an admin adds, checked: a short lower-case name, a template that is text and not too long."""
    name = name.strip().lower()
    if not NAME.match(name):
        raise ValueError(
            f"a style name is 1 to {MAX_STYLE_NAME} lower-case letters, digits, - or _, starting with a letter or "
            f"digit (got {name[:40]!r})"
        )
    for what, text in (("style prompt", prompt), ("style negative prompt", negative)):
        check_text(what, text)
        if len(text) > MAX_TEMPLATE_CHARS:
            raise ValueError(f"the {what} is {len(text)} characters; the limit is {MAX_TEMPLATE_CHARS}")
    if not prompt.strip():
        raise ValueError("a style needs a prompt template, e.g. 'watercolor painting of {prompt}'")
    return Style(name, prompt.strip(), negative.strip())


def find_style(name: str, styles: Mapping[str, Style] | None = None) -> Style:
    """The style called `name` among `styles` (a server's, which win) and the built-in ones."""
    known = {**BUILT_IN, **(styles or {})}
    style = known.get(name.strip().lower())
    if style is None:
        raise ValueError(f"unknown style {name.strip()[:40]!r}; known styles: {', '.join(sorted(known))}")
    return style
