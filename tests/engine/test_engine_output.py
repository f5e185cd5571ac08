"""PNG encoding: metadata never leaves the engine, and equal pixels give equal bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, PngImagePlugin

from engine.output import png_bytes


def _picture(mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).convert(mode)


def _with_metadata(image: Image.Image, format: str) -> Image.Image:
    exif = Image.Exif()
    exif[0x010F] = "Camera Maker"  # Make
    exif[0x0131] = "secret software"  # Software
    buffer = io.BytesIO()
    if format == "PNG":
        text = PngImagePlugin.PngInfo()
        text.add_text("parameters", "a prompt, Steps: 20")
        image.save(buffer, format="PNG", exif=exif, pnginfo=text, dpi=(300, 300))
    else:
        image.save(buffer, format=format, exif=exif, quality=95)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_exif_and_text_are_stripped() -> None:
    tagged = _with_metadata(_picture(), "PNG")
    assert tagged.getexif() and tagged.info.get("parameters")
    clean = Image.open(io.BytesIO(png_bytes(tagged)))
    assert dict(clean.getexif()) == {}
    assert set(clean.info) <= {"dpi"} - {"dpi"}  # no text, exif, dpi or icc chunks at all
    assert np.array_equal(np.asarray(clean), np.asarray(_picture()))


def test_jpeg_exif_is_stripped() -> None:
    tagged = _with_metadata(_picture(), "JPEG")
    assert tagged.getexif()
    data = png_bytes(tagged)
    assert b"eXIf" not in data and b"Camera Maker" not in data
    assert Image.open(io.BytesIO(data)).getexif() == {}


def test_equal_pixels_give_equal_bytes() -> None:
    plain = png_bytes(_picture())
    assert png_bytes(_picture()) == plain
    assert png_bytes(_with_metadata(_picture(), "PNG")) == plain
    assert png_bytes(_picture().rotate(90, expand=True)) != plain


def test_unusual_modes_become_rgb_or_rgba() -> None:
    palette = _picture().convert("P")
    assert Image.open(io.BytesIO(png_bytes(palette))).mode == "RGB"
    assert Image.open(io.BytesIO(png_bytes(_picture().convert("CMYK")))).mode == "RGB"
    assert Image.open(io.BytesIO(png_bytes(_picture("RGBA")))).mode == "RGBA"
