"""What access needs from facemodel, and how facemodel can fail it: the interface the
face cache and the door call (the client over the pod-local Unix socket implements it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


class FaceServiceUnavailable(Exception):
    """facemodel cannot be reached or failed."""


class ImageRejected(Exception):
    """The frame is not an image facemodel accepts (format, size, corrupt)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GalleryMissing(Exception):
    """facemodel does not hold this gallery (restarted, or nothing loaded yet)."""


@dataclass(frozen=True)
class Identification:
    model: str
    quality_ok: bool
    quality_code: str | None
    embedding: NDArray[np.float32] | None
    best_subject: str | None
    best_similarity: float | None
    threshold: float
    timings_ms: dict[str, float]
    liveness_ok: bool | None = None  # None: a single frame, no liveness asked
    liveness_code: str | None = None


class FaceEngine(Protocol):
    """What access needs from facemodel (over the pod-local Unix socket)."""

    async def identify(self, gallery: str, image: bytes, content_type: str) -> Identification: ...
    async def analyse(self, image: bytes, content_type: str) -> Identification: ...
    async def identify_live(self, gallery: str | None, frames: Sequence[bytes]) -> Identification: ...
    async def search(
        self, gallery: str, space: str, probe: NDArray[np.float32], *, k: int = 1
    ) -> list[tuple[str, float]]: ...
    async def put_vectors(self, gallery: str, space: str, vectors: dict[str, NDArray[np.float32]]) -> None: ...
    async def remove(self, gallery: str, subject: str) -> None: ...
    async def subjects(self, gallery: str) -> set[str]: ...
    async def embedding_space(self) -> str: ...
    async def gallery_sizes(self) -> dict[str, int]: ...
