"""Active liveness from a short burst of frames (docs/adr/0026).

The kiosk asks the member for a small head turn and sends 2-4 frames of it. A flat
picture held to the camera can move, tilt and change size, but its landmarks move
together: every similarity transform (shift, in-plane rotation, scale) — and, nearly, a
photo turned about its vertical axis, which mostly compresses it horizontally — leaves
the nose where it was *relative to the eyes*. A real head turning shifts the nose,
which stands out of the face, across the line between the eyes. So the burst passes when

- every frame is a different capture (not the same bytes, not the same pixels, not the
  same aligned face crop);
- every frame shows a usable face, and the same person in all of them;
- the nose's offset along the eye axis, in eye distances (the *yaw ratio*), changes by
  at least ``min_yaw_change`` across the burst and no frame jumps implausibly far;
- the face keeps roughly its size (a head turning does not approach the camera).

What it does not stop: a video of the member turning their head replayed on a screen,
a 3D mask, or a printed photo bent along the nose line. It raises the bar from "hold up
a photo" to "have a video of this member and a screen"; nothing more is claimed.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from facemodel.engine import Analysis, Detection, UInt8Image


@dataclass(frozen=True)
class LivenessRules:
    min_frames: int = 2
    max_frames: int = 4
    # The asked-for turn. A real ~20 degree turn moves the nose ~0.2 eye distances; a print
    # moved about in front of the camera measures up to ~0.1 (YuNet's landmark jitter
    # under shift, scale and small rotations, measured on the test photos).
    min_yaw_change: float = 0.18
    max_yaw_step: float = 0.45  # between consecutive frames: faster than a head turns
    # Ratio of eye distances across the burst: a turn foreshortens them (cos 40 deg ~ 0.77),
    # stepping towards the camera mid-burst grows them.
    max_scale_change: float = 1.5
    # Mean absolute difference (0-255) between the aligned 112x112 face crops: the face, not
    # the whole frame, where a small face's turn would vanish in the background.
    min_pixel_difference: float = 0.5


@dataclass(frozen=True)
class LivenessVerdict:
    ok: bool
    code: str | None = None  # why not: identical_frames, no_face, identity_changed, no_head_turn, ...
    yaw_change: float | None = None


def yaw_ratio(detection: Detection) -> float:
    """The nose's offset along the eye axis, in eye distances (signed): invariant to where
    the face is in the frame, its size and its in-plane rotation."""
    right_eye, left_eye, nose = detection.landmarks[0], detection.landmarks[1], detection.landmarks[2]
    axis = left_eye - right_eye
    distance = float(np.linalg.norm(axis))
    if distance < 1:
        return 0.0
    return float((nose - (right_eye + left_eye) / 2) @ (axis / distance)) / distance


def judge_burst(
    frames: Sequence[bytes],
    pixels: Sequence[UInt8Image],
    analyses: Sequence[Analysis],
    *,
    threshold: float,
    rules: LivenessRules,
) -> LivenessVerdict:
    if not rules.min_frames <= len(frames) <= rules.max_frames:
        return LivenessVerdict(False, "wrong_frame_count")
    if len({hashlib.sha256(frame).digest() for frame in frames}) < len(frames):
        return LivenessVerdict(False, "identical_frames")
    for index, image in enumerate(pixels):
        if any(image.shape == other.shape and np.array_equal(image, other) for other in pixels[index + 1 :]):
            return LivenessVerdict(False, "identical_frames")  # re-encoded, same pixels
    if any(
        analysis.embedding is None or analysis.detection is None or analysis.aligned is None for analysis in analyses
    ):
        return LivenessVerdict(False, "no_face_in_every_frame")
    crops = [analysis.aligned.astype(np.float32) for analysis in analyses if analysis.aligned is not None]
    for index, crop in enumerate(crops):
        for other in crops[index + 1 :]:
            if float(np.abs(crop - other).mean()) < rules.min_pixel_difference:
                return LivenessVerdict(False, "identical_frames")
    embeddings = [analysis.embedding for analysis in analyses if analysis.embedding is not None]
    for index, embedding in enumerate(embeddings):
        for other in embeddings[index + 1 :]:
            if float(embedding @ other) < threshold:
                return LivenessVerdict(False, "identity_changed")
    detections = [analysis.detection for analysis in analyses if analysis.detection is not None]
    yaws = [yaw_ratio(detection) for detection in detections]
    change = round(max(yaws) - min(yaws), 4)
    sizes = [float(np.linalg.norm(d.landmarks[1] - d.landmarks[0])) for d in detections]
    if max(sizes) / max(min(sizes), 1e-6) > rules.max_scale_change:
        return LivenessVerdict(False, "implausible_movement", change)
    if any(abs(later - earlier) > rules.max_yaw_step for earlier, later in itertools.pairwise(yaws)):
        return LivenessVerdict(False, "implausible_movement", change)
    if change < rules.min_yaw_change:
        return LivenessVerdict(False, "no_head_turn", change)
    return LivenessVerdict(True, None, change)
