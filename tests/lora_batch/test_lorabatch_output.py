"""Output for chat platforms: the PNG when it fits the upload limit, else a smaller WebP or JPEG, never with
metadata."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.output import MIN_FIT_SIDE, fit_to_limit, png_bytes


def _noise(width: int = 256, height: int = 192, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    return image.convert(mode)


def _tagged(image: Image.Image) -> Image.Image:
    """The image re-read from a JPEG carrying EXIF (camera and software)."""
    exif = Image.Exif()
    exif[0x010F] = "Camera Maker"
    exif[0x0131] = "secret software"
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", exif=exif, quality=95)
    tagged = Image.open(io.BytesIO(buffer.getvalue()))
    assert tagged.getexif()
    return tagged


def test_a_png_that_fits_is_kept_as_is() -> None:
    image = _noise()
    data, content_type = fit_to_limit(image, 10**6)
    assert content_type == "image/png" and data == png_bytes(image)


def test_a_noisy_image_over_the_limit_becomes_a_webp_that_fits() -> None:
    image = _tagged(_noise())
    assert len(png_bytes(image)) > 140_000
    for limit in (60_000, 8_000):
        data, content_type = fit_to_limit(image, limit)
        assert content_type == "image/webp" and len(data) <= limit
        fitted = Image.open(io.BytesIO(data))
        assert fitted.format == "WEBP" and not fitted.getexif() and "exif" not in fitted.info
        assert b"Camera Maker" not in data and b"secret software" not in data
        # Quality goes first; only a much smaller limit costs pixels, and the aspect ratio is kept.
        width, height = fitted.size
        assert abs(width / height - 256 / 192) < 0.02
    assert Image.open(io.BytesIO(fit_to_limit(image, 60_000)[0])).size == (256, 192)
    assert Image.open(io.BytesIO(fit_to_limit(image, 8_000)[0])).size < (256, 192)


def test_without_webp_it_is_a_jpeg_flattened_on_white() -> None:
    transparent = _noise(mode="RGBA")
    alpha = np.full((192, 256), 255, np.uint8)
    alpha[:, :128] = 0  # the left half is fully transparent
    transparent.putalpha(Image.fromarray(alpha))
    data, content_type = fit_to_limit(transparent, 30_000, allow_webp=False)
    assert content_type == "image/jpeg" and len(data) <= 30_000
    fitted = Image.open(io.BytesIO(data))
    assert fitted.format == "JPEG" and fitted.mode == "RGB" and not fitted.getexif()
    left = np.asarray(fitted.convert("RGB"))[:, : fitted.width // 3]
    assert left.min() > 200  # white where the image was transparent


def test_a_limit_too_small_for_any_useful_image_is_an_error() -> None:
    with pytest.raises(ValueError, match=rf"does not fit in 300 bytes even at \d+x{MIN_FIT_SIDE}"):
        fit_to_limit(_noise(), 300)
    with pytest.raises(ValueError, match="max_bytes must be positive"):
        fit_to_limit(_noise(), 0)
