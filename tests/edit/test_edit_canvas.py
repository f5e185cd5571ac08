"""The geometry of edits: masks, work sizes, outpaint canvases, parsing `--extend`, and the final composite."""

from __future__ import annotations

import numpy as np
import pytest
from edit_support import beyond_band, box_mask, noise_image
from PIL import Image

from engine.canvas import Extend, feather_width, outpaint_geometry, prepare_mask, work_size
from engine.edit import composite, fill_from_surroundings
from engine.registry import Registry
from jobs.specs import parse_extend


def test_a_grey_half_size_mask_is_resized_to_the_image_and_thresholded_at_mid_grey() -> None:
    mask = Image.new("L", (32, 16), 0)
    mask.paste(127, (0, 0, 8, 16))  # just below the threshold: kept
    mask.paste(200, (16, 0, 24, 16))  # anti-aliased white: repainted
    prepared = np.asarray(prepare_mask(mask.convert("RGB"), (64, 32)))
    assert prepared.shape == (32, 64)
    assert set(np.unique(prepared)) == {0, 255}
    assert (prepared[:, :16] == 0).all() and (prepared[:, 33:47] == 255).all()


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (Image.new("L", (64, 64), 100), "the mask is empty (all black)"),
        (Image.new("L", (64, 64), 255), "nothing of the image would be kept"),
        (Image.new("L", (64, 40), 255), "aspect ratios differ"),
    ],
)
def test_unusable_masks_are_refused_with_the_reason(mask: Image.Image, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        prepare_mask(mask, (64, 64))


def test_a_mask_one_pixel_off_the_image_shape_is_accepted() -> None:
    assert prepare_mask(box_mask((641, 480), (0, 0, 10, 10)), (640, 480)).size == (640, 480)


def test_work_size_scales_small_images_up_and_large_ones_into_the_limits() -> None:
    registry = Registry.load()
    sd15 = registry.get("sd15-inpaint")
    assert work_size(sd15, (256, 256)) == (512, 512)  # the model's default area
    assert work_size(sd15, (640, 480)) == (640, 480)  # already fine: native
    width, height = work_size(sd15, (4000, 3000))
    assert width * height <= sd15.max_pixels and max(width, height) <= sd15.max_side
    assert width % 8 == height % 8 == 0 and abs(width / height - 4 / 3) < 0.02
    flux = registry.get("flux-fill")
    assert all(side % 16 == 0 for side in work_size(flux, (1000, 700)))


def test_outpaint_geometry_is_exact_and_pads_the_work_canvas_to_the_model_step() -> None:
    tiny = Registry.load().get("tiny-flux-fill")  # a step of 16
    geometry = outpaint_geometry(tiny, (70, 50), Extend(left=20, top=8, bottom=13))
    assert geometry.size == (90, 71) and geometry.offset == (20, 8) and geometry.work == (96, 80)


def test_an_outpaint_past_the_model_limits_is_painted_scaled_down_at_the_asked_size() -> None:
    sd15 = Registry.load().get("sd15-inpaint")  # 1024 px a side, 786432 pixels at most
    zoom = outpaint_geometry(sd15, (512, 512), Extend(256, 256, 256, 256))
    assert zoom.size == (1024, 1024) and zoom.offset == (256, 256) and zoom.scaled
    assert zoom.work == work_size(sd15, (1024, 1024)) and zoom.work[0] * zoom.work[1] <= sd15.max_pixels
    wide = outpaint_geometry(sd15, (1024, 768), Extend(left=512, right=512, top=384, bottom=384))
    assert wide.size == (2048, 1536) and max(wide.work) <= 1024 and wide.scaled
    within = outpaint_geometry(sd15, (512, 512), Extend(left=256))
    assert within.work == (768, 512) and not within.scaled  # within the limits: painted at its own size


@pytest.mark.parametrize(
    ("extend", "message"),
    [
        (Extend(right=2000), "passes sd15-inpaint's maximum of 2048 px a side for an outpaint"),
        (Extend(right=1960, bottom=1960), "is 4096576 pixels, past sd15-inpaint's maximum of 3145728"),
        (Extend(), "at least one side"),
    ],
)
def test_outpaint_past_the_model_maximum_is_refused(extend: Extend, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        outpaint_geometry(Registry.load().get("sd15-inpaint"), (64, 64), extend)


def test_extend_parses_sides_and_refuses_anything_but_whole_pixels() -> None:
    assert parse_extend("left=256, top=64") == Extend(left=256, top=64)
    assert parse_extend("LEFT=1,right=2,top=3,bottom=4") == Extend(1, 2, 3, 4)
    for text, message in [
        ("left=-1", "whole number"),
        ("left=1.5", "whole number"),
        ("left=²", "whole number"),
        ("left", "left=256,right=0"),
        ("up=4", "left=256,right=0"),
        ("left=1,left=2", "twice"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_extend(text)
    with pytest.raises(ValueError, match="whole number"):
        Extend(top=True)  # type: ignore[arg-type]


def test_composite_keeps_the_original_exactly_beyond_the_band_and_ramps_inside_it() -> None:
    original, generated = noise_image(96, 64, seed=1), noise_image(96, 64, seed=2)
    mask = box_mask((96, 64), (40, 20, 56, 40))
    feather = feather_width(original.size)
    out = np.asarray(composite(original, generated, mask, feather)).astype(int)
    before, after = np.asarray(original).astype(int), np.asarray(generated).astype(int)

    inside = np.asarray(mask) == 255
    assert np.array_equal(out[inside], after[inside])
    kept = beyond_band(mask, feather)
    assert np.array_equal(out[kept], before[kept])
    # Two pixels past the mask (its last column is 55), halfway through the 4 px band: the mean of the two.
    assert np.abs(out[30, 57] - (before[30, 57] + after[30, 57]) / 2).max() <= 1


def test_an_inward_composite_keeps_every_pixel_outside_the_mask_and_ramps_inside_it() -> None:
    original, generated = noise_image(96, 64, seed=1), noise_image(96, 64, seed=2)
    mask = Image.new("L", (96, 64), 255)
    mask.paste(0, (32, 16, 64, 48))  # an outpaint's: the source kept in the middle
    feather = feather_width(original.size)
    out = np.asarray(composite(original, generated, mask, feather, inward=True)).astype(int)
    before, after = np.asarray(original).astype(int), np.asarray(generated).astype(int)
    assert np.array_equal(out[16:48, 32:64], before[16:48, 32:64])
    assert np.array_equal(out[:8], after[:8])  # at least `feather` px from the source: generated
    # Two pixels left of the source (its first column is 32), halfway through the 4 px band.
    assert np.abs(out[30, 30] - (before[30, 30] + after[30, 30]) / 2).max() <= 1


def test_the_removal_prefill_takes_the_hole_from_its_surroundings() -> None:
    image = Image.new("RGB", (64, 64), (30, 120, 200))
    image.paste((255, 0, 0), (20, 20, 40, 40))  # the object to remove
    filled = np.asarray(fill_from_surroundings(image, box_mask((64, 64), (18, 18, 42, 42))))
    assert np.abs(filled.astype(int) - (30, 120, 200)).max() <= 4  # no trace of the red square
