"""Where a face's five landmarks go in an aligned 112x112 crop, and the transform that
puts them there: shared by the face engine that serves a pack and the verification that
checks a candidate pack, so both see faces aligned the same way."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

# The ArcFace 5-point template for 112x112 crops (the alignment every SFace/ArcFace
# recogniser was trained on): eyes, nose tip, mouth corners.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def similarity_to_template(landmarks: NDArray[np.float32]) -> NDArray[np.float64] | None:
    """The least-squares similarity transform (Umeyama) of five landmarks onto the ArcFace
    template, as a 2x3 matrix; None for degenerate landmarks. It is what insightface's
    ``face_align.norm_crop`` computes (through scikit-image), without that dependency."""
    src, dst = landmarks.astype(np.float64), ARCFACE_TEMPLATE.astype(np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_centred, dst_centred = src - src_mean, dst - dst_mean
    variance = float((src_centred**2).sum()) / len(src)
    if variance <= 1e-12:
        return None
    covariance = dst_centred.T @ src_centred / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    signs = np.array([1.0, -1.0 if np.linalg.det(covariance) < 0 else 1.0])
    rotation = u @ np.diag(signs) @ vt
    scale = float((singular * signs).sum()) / variance
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])
