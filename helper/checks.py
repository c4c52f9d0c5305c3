"""The task judge's measured checks: each needs no training, and each failure is a reason.

- the expected number of photos arrived;
- no photo is a re-submission of a photo of an earlier task at the branch (perceptual
  hash within a small Hamming distance: survives re-encoding, resizing and small crops);
- no photo is blurred (variance of the Laplacian of the grey image, at a fixed size so
  the number does not depend on the camera's resolution);
- no photo is too dark (mean grey level);
- each photo was taken recently (its EXIF capture time against the submission time, when
  the camera wrote one).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from PIL import Image

from contracts import VerdictReason
from helper.photos import hamming

MEASURE_SIDE = 512  # the longer side photos are measured at
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Thresholds:
    duplicate_max_distance: int
    blur_min_variance: float
    dark_min_brightness: float
    max_photo_age_s: float


@dataclass(frozen=True)
class Measured:
    """One photo as the checks see it."""

    position: int
    phash: int
    sha256: str
    captured_at: datetime | None
    sharpness: float  # variance of the Laplacian at MEASURE_SIDE
    brightness: float  # mean grey level, 0-255


@dataclass(frozen=True)
class EarlierPhoto:
    task_id: str
    phash: int
    sha256: str


def grey_at_measure_size(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        grey = image.convert("L")
        scale = MEASURE_SIDE / max(grey.size)
        if scale < 1:
            grey = grey.resize((max(1, round(grey.width * scale)), max(1, round(grey.height * scale))))
        return np.asarray(grey, dtype=np.float32)


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian (the same kernel OpenCV's Laplacian uses)."""
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    centre = grey[1:-1, 1:-1]
    laplacian = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * centre
    return float(laplacian.var())


def measure(position: int, data: bytes, *, phash: int, sha256: str, captured_at: datetime | None) -> Measured:
    grey = grey_at_measure_size(data)
    return Measured(
        position=position,
        phash=phash,
        sha256=sha256,
        captured_at=captured_at,
        sharpness=laplacian_variance(grey),
        brightness=float(grey.mean()),
    )


def failed_checks(
    photos: Sequence[Measured],
    *,
    expected: int,
    earlier: Sequence[EarlierPhoto],
    submitted_at: datetime,
    limits: Thresholds,
) -> list[VerdictReason]:
    reasons: list[VerdictReason] = []
    if len(photos) < expected:
        reasons.append(VerdictReason(code="too_few_photos", message=f"{len(photos)} of {expected} photos"))
    for photo in photos:
        label = f"photo {photo.position + 1}"
        match = next(
            (
                old
                for old in earlier
                if old.sha256 == photo.sha256 or hamming(old.phash, photo.phash) <= limits.duplicate_max_distance
            ),
            None,
        )
        if match is not None:
            reasons.append(
                VerdictReason(code="duplicate_photo", message=f"{label} was already sent with task {match.task_id}")
            )
        if photo.sharpness < limits.blur_min_variance:
            reasons.append(
                VerdictReason(
                    code="blurred",
                    message=f"{label} is blurred (sharpness {photo.sharpness:.0f} < {limits.blur_min_variance:.0f})",
                )
            )
        if photo.brightness < limits.dark_min_brightness:
            reasons.append(
                VerdictReason(
                    code="too_dark",
                    message=f"{label} is too dark (brightness {photo.brightness:.0f} < "
                    f"{limits.dark_min_brightness:.0f})",
                )
            )
        if photo.captured_at is not None:
            age = (submitted_at - photo.captured_at).total_seconds()
            if age > limits.max_photo_age_s:
                reasons.append(
                    VerdictReason(code="photo_too_old", message=f"{label} was taken {age / 3600:.1f} h before sending")
                )
            elif age < -CLOCK_SKEW.total_seconds():
                reasons.append(VerdictReason(code="photo_from_future", message=f"{label} has a capture time ahead"))
    # Two photos of one task that are the same picture are a re-submission too.
    for index, photo in enumerate(photos):
        for other in photos[:index]:
            if hamming(other.phash, photo.phash) <= limits.duplicate_max_distance:
                reasons.append(
                    VerdictReason(
                        code="duplicate_photo",
                        message=f"photo {photo.position + 1} repeats photo {other.position + 1}",
                    )
                )
                break
    return reasons
