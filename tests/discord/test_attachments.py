"""Result files that fit Discord's upload limit, and progress previews; real Pillow encodes, no processes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from bots.discord.attachments import PREVIEW_MAX_SIDE, fit_image, preview_jpeg
from engine.output import png_bytes


def _noise_png(side: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return png_bytes(PILImage.fromarray(pixels))


def test_a_file_within_the_limit_is_sent_as_it_is() -> None:
    data = _noise_png(64)
    upload = fit_image(data, "j1-0.png", len(data))
    assert (upload.filename, upload.data, upload.content_type) == ("j1-0.png", data, "image/png")


@pytest.mark.parametrize("limit", [200_000, 20_000])
def test_a_file_over_the_limit_becomes_a_webp_that_fits(limit: int) -> None:
    data = _noise_png(512)  # noise does not compress: ~790 KB of PNG
    assert len(data) > limit
    upload = fit_image(data, "j1-0.png", limit)
    assert upload.filename == "j1-0.webp" and upload.content_type == "image/webp"
    assert len(upload.data) <= limit
    with PILImage.open(io.BytesIO(upload.data)) as image:
        assert image.format == "WEBP"
        # A loose limit keeps the size; a tight one downscales rather than failing.
        assert (image.size == (512, 512)) == (limit == 200_000)


def test_a_limit_no_image_can_meet_is_an_error_not_a_silent_drop() -> None:
    with pytest.raises(ValueError, match="cannot be made to fit in 10 bytes"):
        fit_image(_noise_png(64), "j1-0.png", 10)


def test_a_preview_is_a_small_jpeg() -> None:
    preview = preview_jpeg(PILImage.new("RGB", (1024, 512), "red"))
    with PILImage.open(io.BytesIO(preview)) as image:
        assert image.format == "JPEG" and image.size == (PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE // 2)
    assert len(preview) < 10_000
