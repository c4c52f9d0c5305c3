"""Is the face cut off by the edge of the picture? Judged by the five landmarks and by how
much of the detector's box lies outside, with rules of their own for the two places a face
comes from.

* A live frame at the gate: the member is standing in front of the camera and can step
  into the middle, so we ask for the whole head (landmarks well inside, the box almost
  entirely inside).
* An uploaded enrolment photo: ID-style portraits are cropped tightly at the forehead and
  the chin, and often a little at the cheeks. The detector's box then sticks out although
  everything the recognizer looks at is in the picture: the aligned 112x112 crop reaches
  about one eye distance beside each eye, and the landmarks are what place it. A photo is
  refused only when landmarks crowd an edge or a large part of the box is missing. Nobody
  can "move" in an uploaded photo, so the refusal asks for another photo.

Margins are in eye distances, so the same rule holds for a 200-pixel and a 2,000-pixel face.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

Purpose = Literal["entry", "enrolment"]
PURPOSES: tuple[Purpose, ...] = ("entry", "enrolment")

CUT_OFF_REASONS: dict[Purpose, str] = {
    "entry": "move into the middle of the frame",
    "enrolment": "the face is cut off at the edge of the photo: use one that shows the whole face",
}


@dataclass(frozen=True)
class CutOffRules:
    # Least distance of every landmark from the left and right edges (cheeks), and from
    # the top and bottom edges (forehead, chin), in eye distances.
    side_margin: float
    vertical_margin: float
    # Largest share of the face box that may lie outside the picture.
    max_outside: float


# Values from bench/facemodel_enrolment_crops.py: the enrolment rule accepts every tight
# portrait crop of the test photos (each still matches its full photo well above the
# threshold) and refuses the photos cut through the cheek.
ENTRY_CUT_OFF = CutOffRules(side_margin=0.5, vertical_margin=0.5, max_outside=0.08)
ENROLMENT_CUT_OFF = CutOffRules(side_margin=0.3, vertical_margin=0.15, max_outside=0.4)


def outside_share(box: tuple[float, float, float, float], width: int, height: int) -> float:
    """The share of the box (x, y, w, h) that lies outside a width x height picture."""
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return 1.0
    inside_w = max(0.0, min(x + w, width) - max(x, 0.0))
    inside_h = max(0.0, min(y + h, height) - max(y, 0.0))
    return 1.0 - (inside_w * inside_h) / (w * h)


def landmark_margins(landmarks: NDArray[np.float32], width: int, height: int) -> tuple[float, float]:
    """The least distance of any landmark from the side edges and from the top/bottom
    edges, in eye distances (negative when a landmark lies outside the picture)."""
    eye_distance = float(np.linalg.norm(landmarks[1] - landmarks[0]))
    if eye_distance < 1:
        return -1.0, -1.0
    xs, ys = landmarks[:, 0], landmarks[:, 1]
    side = min(float(xs.min()), width - float(xs.max())) / eye_distance
    vertical = min(float(ys.min()), height - float(ys.max())) / eye_distance
    return side, vertical


def cut_off(
    box: tuple[float, float, float, float], landmarks: NDArray[np.float32], width: int, height: int, rules: CutOffRules
) -> bool:
    side, vertical = landmark_margins(landmarks, width, height)
    return (
        side < rules.side_margin
        or vertical < rules.vertical_margin
        or outside_share(box, width, height) > rules.max_outside
    )
