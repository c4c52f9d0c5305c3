"""The active face model, swapped by replacing one reference.

A request reads ``holder.current`` once and runs on that engine to the end, so a swap
never disturbs requests in flight: they finish on the old model while new requests see
the new one. The previous engine is kept for a fast rollback.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facemodel.engine import FaceEngine, UInt8Image
from facemodel.packs import PackError


@dataclass(frozen=True)
class SwapReport:
    previous: str | None
    active: str
    load_ms: float
    swap_ms: float


class ModelHolder:
    def __init__(self, engine: FaceEngine) -> None:
        self._active = engine
        self._previous: FaceEngine | None = None
        self._lock = threading.Lock()  # one deploy at a time; readers never take it
        self.swap_count = 0
        # The registry's version of each engine deployed by mlops (by object id); an engine
        # loaded at start is known by its pack's own version.
        self._versions: dict[int, str] = {}
        # The last aligned face that passed the quality gate: a real face to check a new
        # model of the same embedding space against before it goes live.
        self.reference_face: UInt8Image | None = None

    @property
    def current(self) -> FaceEngine:
        return self._active

    @property
    def previous(self) -> FaceEngine | None:
        return self._previous

    def version_of(self, engine: FaceEngine) -> str:
        return self._versions.get(id(engine), engine.manifest.version)

    @property
    def active_version(self) -> str:
        return self.version_of(self._active)

    @property
    def previous_version(self) -> str | None:
        previous = self._previous
        return self.version_of(previous) if previous is not None else None

    def deploy(
        self, pack: Path, *, threads: int = 1, version: str | None = None, new_space_approved: bool = False
    ) -> SwapReport:
        """Load, warm up and self-test ``pack``, then make it active. Blocking (run it in
        a worker thread): loading takes a second, the swap itself microseconds.

        ``new_space_approved``: the pack embeds into another space and its re-enrolment was
        approved (galleries of the old space stop matching until re-enrolled)."""
        candidate, load_ms = self.prepare(pack, threads=threads, new_space_approved=new_space_approved)
        return self.activate(candidate, load_ms=load_ms, version=version, new_space_approved=new_space_approved)

    def prepare(self, pack: Path, *, threads: int = 1, new_space_approved: bool = False) -> tuple[FaceEngine, float]:
        """The slow half of a deploy (load and self-test), off the request path."""
        started = time.perf_counter()
        candidate = FaceEngine(pack, threads=threads, rules=self._active.rules)
        self._check_space(candidate, new_space_approved=new_space_approved)
        self.self_test(candidate)
        return candidate, (time.perf_counter() - started) * 1000

    def activate(
        self, candidate: FaceEngine, *, load_ms: float, version: str | None = None, new_space_approved: bool = False
    ) -> SwapReport:
        """The swap: one reference replaced (call it where a thread switch is least likely
        to land in the middle of the timing, e.g. the event loop)."""
        with self._lock:
            if version is not None:
                self._versions[id(candidate)] = version
            return self._activate(candidate, load_ms, new_space_approved=new_space_approved)

    def rollback(self, *, new_space_approved: bool = False) -> SwapReport:
        with self._lock:
            if self._previous is None:
                raise PackError("no previous model to roll back to")
            return self._activate(self._previous, 0.0, new_space_approved=new_space_approved)

    def _check_space(self, candidate: FaceEngine, *, new_space_approved: bool = False) -> None:
        active = self._active.manifest
        if candidate.manifest.embedding_space != active.embedding_space and not new_space_approved:
            # Enrolled vectors live in the old space: swapping would make every member a
            # stranger. That is a re-enrolment, not a hot swap (docs/adr/0009).
            raise PackError(
                f"{candidate.label} embeds into {candidate.manifest.embedding_space!r}, not "
                f"{active.embedding_space!r}: re-enrol before switching"
            )

    def _activate(self, candidate: FaceEngine, load_ms: float, *, new_space_approved: bool = False) -> SwapReport:
        active = self._active
        self._check_space(candidate, new_space_approved=new_space_approved)
        started = time.perf_counter()
        self._previous, self._active = active, candidate
        swap_ms = (time.perf_counter() - started) * 1000
        self.swap_count += 1
        # Only the active and the kept previous engine can be asked for their version.
        self._versions = {key: value for key, value in self._versions.items() if key in (id(active), id(candidate))}
        return SwapReport(active.label, candidate.label, round(load_ms, 3), swap_ms)

    def self_test(self, candidate: FaceEngine) -> None:
        """Refuse a model that cannot do the job, before it serves anybody."""
        blank = np.full((480, 640, 3), 127, np.uint8)
        if candidate.detect(blank):
            raise PackError(f"{candidate.label}: self-test found a face in a blank frame")
        probe = self.reference_face if self.reference_face is not None else _synthetic_face()
        first, second = candidate.embed(probe), candidate.embed(probe)
        if first.shape != (candidate.manifest.embedding_dim,) or not np.all(np.isfinite(first)):
            raise PackError(f"{candidate.label}: self-test embedding is not a finite {first.shape} vector")
        if float(first @ second) < 0.9999:
            raise PackError(f"{candidate.label}: self-test embeddings are not deterministic")
        same_space = candidate.manifest.embedding_space == self._active.manifest.embedding_space
        if self.reference_face is not None and same_space:
            agreement = float(first @ self._active.embed(self.reference_face))
            if agreement < 0.8:
                raise PackError(f"{candidate.label}: disagrees with the active model on a real face ({agreement:.2f})")


def _synthetic_face() -> UInt8Image:
    """A deterministic 112x112 crop with face-like structure (no third-party photo ships)."""
    face = np.full((112, 112, 3), 150, np.uint8)
    yy, xx = np.mgrid[0:112, 0:112]
    face[((xx - 56) / 40) ** 2 + ((yy - 60) / 52) ** 2 <= 1] = (120, 150, 200)
    for cx in (38, 74):
        face[((xx - cx) / 8) ** 2 + ((yy - 52) / 4) ** 2 <= 1] = (40, 40, 40)
    face[(abs(xx - 56) < 14) & (abs(yy - 92) < 3)] = (60, 60, 150)
    return face


def warm_up_frame() -> bytes:
    """A camera-sized JPEG with the synthetic face in it: a full analysis (decode, detect,
    align, embed) of a frame that needs no photo of anyone."""
    frame = np.full((480, 640, 3), 127, np.uint8)
    frame[120:344, 208:432] = cv2.resize(_synthetic_face(), (224, 224))
    encoded: np.ndarray = cv2.imencode(".jpg", frame)[1]
    return encoded.tobytes()
