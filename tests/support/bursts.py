"""Camera bursts for liveness tests, derived from one still test photo.

A *head turn* is simulated by a smooth local warp that pushes the nose region sideways
relative to the eyes, as a real turn does (the face stays the same person). It shows
that facemodel measures the landmark geometry and passes a burst whose geometry moves
like a head; it does not show that a real member's turn at a real kiosk passes — the
thresholds were chosen with these warps and the yaw spread of the test photos, not with
recorded kiosk bursts. A *held photo* is the same picture moved, scaled and rotated in
the plane with fresh sensor noise: what a camera sees of a print held up to it.
"""

from __future__ import annotations

import cv2
import numpy as np

from facemodel.engine import FaceEngine, decode_image


def _jpeg(image: np.ndarray) -> bytes:
    return bytes(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes())


def head_turn(photo: bytes, engine: FaceEngine, *, amplitudes: tuple[float, ...] = (-0.5, 0.0, 0.5)) -> list[bytes]:
    image = decode_image(photo)
    [*_, detection] = sorted(engine.detect(image), key=lambda found: found.box[2] * found.box[3])
    right_eye, left_eye, nose = detection.landmarks[0], detection.landmarks[1], detection.landmarks[2]
    eye_distance = float(np.linalg.norm(left_eye - right_eye))
    centre_y = (nose[1] + (right_eye[1] + left_eye[1]) / 2) / 2
    height, width = image.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    sigma = 0.5 * eye_distance
    bump = np.exp(-((xx - nose[0]) ** 2 + (yy - centre_y) ** 2) / (2 * sigma**2)).astype(np.float32)
    frames = []
    for amplitude in amplitudes:
        shifted = (xx - amplitude * eye_distance * bump).astype(np.float32)
        warped = cv2.remap(image, shifted, yy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        frames.append(_jpeg(warped))
    return frames


def held_photo(photo: bytes, *, frames: int = 3, seed: int = 1) -> list[bytes]:
    image = decode_image(photo)
    height, width = image.shape[:2]
    rng = np.random.default_rng(seed)
    out = []
    for index in range(frames):
        angle, scale = 2.0 * index - 2.0, 1.0 + 0.03 * index
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
        matrix[:, 2] += (8 * index, -5 * index)
        moved = cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
        noisy = np.clip(moved.astype(np.int16) + rng.integers(-3, 4, moved.shape), 0, 255).astype(np.uint8)
        out.append(_jpeg(noisy))
    return out
