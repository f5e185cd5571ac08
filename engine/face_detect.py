"""Finding faces offline with OpenCV's bundled Haar cascade, and the square crop a restorer gets around each.

The cascade ships inside opencv-python-headless 4.x (5.0 dropped it), so detection needs no download. It finds
frontal faces; profiles and tiny faces are missed, which only means they are left as they are. This module
needs no torch, so a front-end can tell a user "no face found" without loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
from PIL import Image

CASCADE = "haarcascade_frontalface_default.xml"
MAX_FACES = 8
"""Largest faces restored per image; a crowd's smallest faces gain little and each costs a model call."""

MIN_FACE_FRACTION = 0.04
"""Smallest face side detected, as a share of the image's short side (and never under 24 px)."""

DEFAULT_MARGIN = 0.5
"""Crop margin around a detected face on each side, as a share of the face's side: Haar boxes stop at the
brows and chin, restorers are trained on the whole head with some background."""


@dataclass(frozen=True)
class Box:
    """A rectangle in pixels: left, top, width, height."""

    x: int
    y: int
    width: int
    height: int

    def scaled(self, factor: int) -> Box:
        return Box(self.x * factor, self.y * factor, self.width * factor, self.height * factor)


def detect_faces(image: Image.Image) -> list[Box]:
    """Frontal faces in `image`, largest first, at most `MAX_FACES`."""
    gray = cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2GRAY)
    side = max(24, round(min(image.size) * MIN_FACE_FRACTION))
    found = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
    boxes = [Box(int(x), int(y), int(w), int(h)) for x, y, w, h in found]
    boxes.sort(key=lambda box: box.width * box.height, reverse=True)
    return boxes[:MAX_FACES]


def face_crop(face: Box, image_size: tuple[int, int], *, margin: float = DEFAULT_MARGIN) -> Box:
    """The square around `face` widened by `margin` of its side on each side, moved (and if need be shrunk) to
    lie inside the image."""
    width, height = image_size
    side = min(round(max(face.width, face.height) * (1 + 2 * margin)), width, height)
    center_x, center_y = face.x + face.width / 2, face.y + face.height / 2
    left = min(max(0, round(center_x - side / 2)), width - side)
    top = min(max(0, round(center_y - side / 2)), height - side)
    return Box(left, top, side, side)


@cache
def _cascade() -> cv2.CascadeClassifier:
    classifier = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
    if classifier.empty():
        raise RuntimeError(
            f"OpenCV's {CASCADE} did not load: install opencv-python-headless 4.x (5.0 has none)"
        )
    return classifier
