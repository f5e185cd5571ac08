"""Face restoration: the astronaut's face is found and restored, nothing else changes, and an image without a
face comes back unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from enhance_support import astronaut, faceless, pixels

from engine.enhancer import Enhancer
from engine.face_detect import DEFAULT_MARGIN, Box, detect_faces, face_crop
from engine.faces import FaceRestoration, feather_mask
from engine.registry import Registry

ASTRONAUT_FACE = Box(177, 66, 95, 95)  # where OpenCV's frontal-face cascade finds it in skimage's photo


def test_the_astronauts_face_is_found_offline() -> None:
    [face] = detect_faces(astronaut())
    assert abs(face.x - ASTRONAUT_FACE.x) <= 4 and abs(face.y - ASTRONAUT_FACE.y) <= 4
    assert abs(face.width - ASTRONAUT_FACE.width) <= 8
    assert detect_faces(faceless()) == []


@pytest.mark.slow  # one random GFPGAN at its fixed 512 px: seconds on a CPU (shared by the tests below)
def test_restoration_changes_the_face_and_nothing_beyond_its_crop(
    restored_astronaut: FaceRestoration,
) -> None:
    original, restored = pixels(astronaut()), pixels(restored_astronaut.image)
    assert restored.shape == original.shape
    [face] = restored_astronaut.faces
    # The crop is the face widened by the margin on every side; the feathering lies inside it.
    side = round(face.width * (1 + 2 * DEFAULT_MARGIN))
    left, top = round(face.x + face.width / 2 - side / 2), round(face.y + face.height / 2 - side / 2)
    outside = np.ones(original.shape[:2], dtype=bool)
    outside[top : top + side, left : left + side] = False
    assert np.array_equal(restored[outside], original[outside])
    changed = (restored != original).any(axis=2)
    box = changed[face.y : face.y + face.height, face.x : face.x + face.width]
    assert box.mean() > 0.9  # the face itself was replaced by the restorer's output


@pytest.mark.slow
def test_the_paste_is_feathered_not_a_hard_edge(restored_astronaut: FaceRestoration) -> None:
    [crop] = restored_astronaut.crops
    original, restored = pixels(astronaut()), pixels(restored_astronaut.image)
    row = crop.y + crop.height // 2
    change = np.abs(restored[row, crop.x : crop.x + crop.width] - original[row, crop.x : crop.x + crop.width])
    change = change.sum(axis=1)
    # Moving in from the crop's left edge the change grows (the mask ramps up), it does not jump at once.
    assert change[0] < change[crop.width // 4] and change[0] < 0.5 * change[crop.width // 4] + 30


def test_an_image_without_a_face_comes_back_unchanged(enhancer: Enhancer, registry: Registry) -> None:
    image = faceless()
    result = enhancer.restore_faces(registry.get("tiny-gfpgan"), image)
    assert result.faces == [] and result.image is image


def test_without_a_face_the_restorer_is_not_even_loaded(models_dir, registry: Registry) -> None:
    import torch

    fresh = Enhancer(models_dir, device=torch.device("cpu"), dtype=torch.float32)
    result = fresh.enhance(
        faceless(), faces=registry.get("tiny-codeformer"), upscaler=registry.get("tiny-upscale-x2")
    )
    assert result.faces == [] and result.image.size == (192, 128)
    assert fresh.cache.loaded() == ["tiny-upscale-x2"]


def test_a_crop_stays_square_and_inside_the_image() -> None:
    assert face_crop(Box(177, 66, 95, 95), (512, 512)) == Box(
        130, 18, 190, 190
    )  # centre 113.5 - 95 rounds to even
    assert face_crop(Box(0, 0, 40, 40), (100, 80)) == Box(0, 0, 80, 80)  # shifted in, then shrunk to fit
    assert face_crop(Box(90, 60, 10, 10), (100, 80), margin=0) == Box(90, 60, 10, 10)


def test_the_feather_mask_is_one_inside_and_ramps_to_the_edge() -> None:
    mask = feather_mask(20, 4)
    assert mask.shape == (20, 20) and mask[10, 10] == 1 and mask[4:16, 4:16].min() == 1
    assert 0 < mask[0, 10] < mask[1, 10] < mask[3, 10] < 1 and mask.min() > 0


def test_fidelity_and_margin_are_checked(enhancer: Enhancer, registry: Registry) -> None:
    with pytest.raises(ValueError, match="fidelity must be between 0 and 1"):
        enhancer.restore_faces(registry.get("tiny-codeformer"), faceless(), fidelity=2)
    with pytest.raises(ValueError, match="needs a face model"):
        enhancer.restore_faces(registry.get("tiny-upscale-x2"), faceless())
