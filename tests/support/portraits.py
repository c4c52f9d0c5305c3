"""Tightly cropped, ID-style portraits made from the test photos: the face cut at the
forehead, the chin and the cheeks by varying amounts, as members upload them.

Each crop is placed by the landmarks of the full photo, in eye distances: the top edge
0.6-1.2 above the eyes, the bottom edge 0.3-0.8 below the mouth, the sides 0.6-1.0 beside
each eye, the whole crop shifted sideways by up to 0.15.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from facemodel.engine import FaceEngine, decode_image

# One photo per identity and pose (obama2.jpg and 32bit.png are the same picture).
SOURCES = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")
TOPS = (0.6, 0.8, 1.0, 1.2)
BOTTOMS = (0.3, 0.5, 0.8)
SIDES = (0.6, 0.8, 1.0)
SHIFTS = (-0.15, 0.0, 0.15)


@dataclass(frozen=True)
class Portrait:
    source: str
    label: str  # how it was cut, for messages
    pixels: NDArray[np.uint8]


def tight_crops(engine: FaceEngine, photos: Path, sources: tuple[str, ...] = SOURCES) -> Iterator[Portrait]:
    """432 crops (108 per photo) of the test photos."""
    for source in sources:
        image = decode_image((photos / source).read_bytes())
        full = engine.analyse_pixels(image)
        if full.detection is None:
            raise AssertionError(f"no face in {source}")
        marks = full.detection.landmarks
        eyes = (marks[0] + marks[1]) / 2
        eye_distance = float(np.linalg.norm(marks[1] - marks[0]))
        mouth_y = float(marks[3:, 1].mean())
        for top, bottom, side, shift in itertools.product(TOPS, BOTTOMS, SIDES, SHIFTS):
            x0 = round(eyes[0] - (0.5 + side + shift) * eye_distance)
            x1 = round(eyes[0] + (0.5 + side - shift) * eye_distance)
            y0 = round(eyes[1] - top * eye_distance)
            y1 = round(mouth_y + bottom * eye_distance)
            crop = np.ascontiguousarray(image[max(0, y0) : y1, max(0, x0) : x1])
            yield Portrait(source, f"{source} top={top} bottom={bottom} side={side} shift={shift}", crop)
