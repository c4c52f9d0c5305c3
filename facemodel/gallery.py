"""1:N matching: normalised embeddings in one contiguous float32 matrix per gallery, top-k
cosine by a single matrix-vector product (BLAS).

``identify`` runs in a worker thread (a large gallery's scan would otherwise hold the
event loop for its whole duration) while upserts and removals arrive on the loop: one
lock keeps the matrix, the subject list and the row index consistent for a scan. Changes
are rare (enrolments, erasures), so a change that waits for a scan in flight costs little.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Match:
    subject: str
    similarity: float


class Gallery:
    """Subjects and their unit vectors. Adding is amortised O(1) (capacity doubles);
    removing swaps the last row into the hole, so rows stay contiguous."""

    def __init__(self, dimension: int, *, embedding_space: str, capacity: int = 1024) -> None:
        self.dimension = dimension
        self.embedding_space = embedding_space
        self._matrix = np.zeros((max(1, capacity), dimension), np.float32)
        self._subjects: list[str] = []
        self._rows: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._subjects)

    def __contains__(self, subject: str) -> bool:
        return subject in self._rows

    def subjects(self) -> list[str]:
        return list(self._subjects)

    def upsert(self, subject: str, vector: NDArray[np.float32]) -> None:
        unit = _unit(vector, self.dimension)
        with self._lock:
            self._upsert(subject, unit)

    def _upsert(self, subject: str, unit: NDArray[np.float32]) -> None:
        row = self._rows.get(subject)
        if row is None:
            if len(self._subjects) == self._matrix.shape[0]:
                grown = np.zeros((self._matrix.shape[0] * 2, self.dimension), np.float32)
                grown[: len(self._subjects)] = self._matrix[: len(self._subjects)]
                self._matrix = grown
            row = len(self._subjects)
            self._subjects.append(subject)
            self._rows[subject] = row
        self._matrix[row] = unit

    def remove(self, subject: str) -> bool:
        with self._lock:
            return self._remove(subject)

    def _remove(self, subject: str) -> bool:
        row = self._rows.pop(subject, None)
        if row is None:
            return False
        last = len(self._subjects) - 1
        if row != last:
            moved = self._subjects[last]
            self._matrix[row] = self._matrix[last]
            self._subjects[row] = moved
            self._rows[moved] = row
        self._subjects.pop()
        self._matrix[last] = 0.0
        return True

    def identify(self, probe: NDArray[np.float32], *, k: int = 1) -> list[Match]:
        """The ``k`` most similar subjects, best first (cosine of unit vectors). Safe to
        call from a worker thread while the loop adds or removes subjects."""
        unit = _unit(probe, self.dimension)
        with self._lock:
            count = len(self._subjects)
            if count == 0:
                return []
            scores = self._matrix[:count] @ unit
            k = min(k, count)
            top = np.argpartition(-scores, k - 1)[:k] if k < count else np.arange(count)
            top = top[np.argsort(-scores[top])]
            return [Match(self._subjects[index], float(scores[index])) for index in top]

    def verify(self, subject: str, probe: NDArray[np.float32]) -> float | None:
        """1:1: similarity to ``subject``'s vector, or None if the subject is unknown."""
        unit = _unit(probe, self.dimension)
        with self._lock:
            row = self._rows.get(subject)
            if row is None:
                return None
            return float(self._matrix[row] @ unit)


def _unit(vector: NDArray[np.float32], dimension: int) -> NDArray[np.float32]:
    array = np.asarray(vector, dtype=np.float32).reshape(-1)
    if array.shape[0] != dimension:
        raise ValueError(f"expected a {dimension}-d vector, got {array.shape[0]}")
    norm = float(np.linalg.norm(array))
    if not np.isfinite(norm) or norm == 0:
        raise ValueError("vector is zero or not finite")
    return array / norm
