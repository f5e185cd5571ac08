"""Editing a PNG's recipe the way someone tampering with it would: the chunk rewritten with a valid CRC, so only
the signed manifest can tell."""

from __future__ import annotations

import json

from engine.output import assemble_png, png_chunks
from jobs.recipe import RECIPE_KEY


def edit_recipe(png: bytes, change) -> bytes:
    """`png` with its recipe replaced by `change(recipe)` (a dict in, a dict out), CRC and all."""
    edited = []
    for kind, data in png_chunks(png):
        if kind == b"iTXt" and data.startswith(RECIPE_KEY.encode() + b"\0"):
            head, text = data[: len(RECIPE_KEY) + 3], data[len(RECIPE_KEY) + 3 :]
            language, _, rest = text.partition(b"\0")
            translated, _, body = rest.partition(b"\0")
            recipe = change(json.loads(body))
            body = json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()
            data = head + language + b"\0" + translated + b"\0" + body
        edited.append((kind, data))
    return assemble_png(edited)


def without(png: bytes, kind: bytes) -> bytes:
    """`png` without its chunks of `kind` (e.g. b"caBX", the C2PA manifest)."""
    return assemble_png([(k, d) for k, d in png_chunks(png) if k != kind])
