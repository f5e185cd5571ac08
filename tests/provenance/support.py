"""Editing a PNG's recipe the way someone tampering with it would: the chunk rewritten with a valid CRC, so only
the signed manifest can tell."""

from __future__ import annotations

import json
import struct
import zlib

from jobs.recipe import RECIPE_KEY


def chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """The PNG's chunks as (type, data), in order."""
    found, at = [], 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind = png[at + 4 : at + 8]
        found.append((kind, png[at + 8 : at + 8 + length]))
        at += 12 + length
    return found


def assemble(parts: list[tuple[bytes, bytes]]) -> bytes:
    out = b"\x89PNG\r\n\x1a\n"
    for kind, data in parts:
        out += struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return out


def edit_recipe(png: bytes, change) -> bytes:
    """`png` with its recipe replaced by `change(recipe)` (a dict in, a dict out), CRC and all."""
    edited = []
    for kind, data in chunks(png):
        if kind == b"iTXt" and data.startswith(RECIPE_KEY.encode() + b"\0"):
            head, text = data[: len(RECIPE_KEY) + 3], data[len(RECIPE_KEY) + 3 :]
            language, _, rest = text.partition(b"\0")
            translated, _, body = rest.partition(b"\0")
            recipe = change(json.loads(body))
            body = json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()
            data = head + language + b"\0" + translated + b"\0" + body
        edited.append((kind, data))
    return assemble(edited)


def without(png: bytes, kind: bytes) -> bytes:
    """`png` without its chunks of `kind` (e.g. b"caBX", the C2PA manifest)."""
    return assemble([(k, d) for k, d in chunks(png) if k != kind])
