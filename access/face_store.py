"""The cold store of face vectors as the face cache reads it: every vector auth announced,
sealed in access's database, with the tombstones of erased faces and the memberships and
visit scores that say who belongs in which branch gallery.

The event handlers write the rows; the cache reads them, and marks an erasure cleared
once facemodel's galleries have dropped it. Vectors are opened here: the cache only
handles opened ones, and a vector that does not open is skipped (logged), never matched.
"""

from __future__ import annotations

import contextlib
import logging
import math
import uuid
from collections.abc import AsyncIterator, Collection
from datetime import datetime, timedelta

import numpy as np
from cryptography.exceptions import InvalidTag
from numpy.typing import NDArray
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from access.models import FaceTombstone, FaceVector, MembershipCopy, VisitScore
from access.settings import AccessSettings
from common.crypto import VectorSealer
from common.db import Database
from common.events.envelope import utc_now
from common.sealing import reseal_rows

log = logging.getLogger(__name__)

LOAD_CHUNK = 2000
# Fixed forever: vectors sealed under it must still open after an upgrade.
FACE_SEALING_PURPOSE = b"smartgym-access-face-v1"

Vector = NDArray[np.float32]


async def reseal_stored_faces(settings: AccessSettings) -> tuple[int, int]:
    """Key rotation: every vector of the cold store re-sealed under the current biometric
    sealing key. Returns (re-sealed, total); safe to run again after an interruption."""
    database = Database(settings.database_url("access"))
    try:
        sealer = VectorSealer(settings.sealing_keys(), purpose=FACE_SEALING_PURPOSE)
        return await reseal_rows(database, FaceVector, FaceVector.member_id, FaceVector.sealed, sealer)
    finally:
        await database.engine.dispose()


# -- what the rows hold ------------------------------------------------------------------


def version_at(moment: datetime) -> int:
    """An enrolment version for a moment (auth's versions are epoch microseconds)."""
    return int(moment.timestamp() * 1_000_000)


def rank_key(score: float, at: datetime, *, half_life_days: float) -> float:
    tau_s = half_life_days * 86_400 / math.log(2)
    return math.log(score) + at.timestamp() / tau_s


def decayed(score: float, since: datetime, now: datetime, *, half_life_days: float) -> float:
    elapsed_s = max(0.0, (now - since).total_seconds())
    return float(score * 0.5 ** (elapsed_s / (half_life_days * 86_400)))


class FaceStore:
    def __init__(self, *, database: Database, sealer: VectorSealer) -> None:
        self._database = database
        self._sealer = sealer

    # -- vectors -------------------------------------------------------------------------

    async def vectors(
        self, members: Collection[uuid.UUID], *, space: str | None, session: AsyncSession | None = None
    ) -> list[tuple[uuid.UUID, Vector]]:
        """The opened vectors of ``members`` in ``space`` (those the store holds)."""
        found: list[tuple[uuid.UUID, Vector]] = []
        ordered = sorted(members)
        async with self._reading(session) as session:
            for start in range(0, len(ordered), LOAD_CHUNK):
                rows = await session.execute(
                    select(FaceVector.member_id, FaceVector.sealed).where(
                        FaceVector.member_id.in_(ordered[start : start + LOAD_CHUNK]),
                        FaceVector.embedding_space == space,
                    )
                )
                for member_id, sealed in rows:
                    vector = self.open(member_id, sealed)
                    if vector is not None:
                        found.append((member_id, vector))
        return found

    async def page(self, *, space: str, after: uuid.UUID | None) -> list[tuple[uuid.UUID, bytes]]:
        """The next LOAD_CHUNK sealed vectors of ``space`` by member id, each page its own
        short read."""
        async with self._database.sessions() as session:
            query = (
                select(FaceVector.member_id, FaceVector.sealed)
                .where(FaceVector.embedding_space == space)
                .order_by(FaceVector.member_id)
                .limit(LOAD_CHUNK)
            )
            if after is not None:
                query = query.where(FaceVector.member_id > after)
            return [(member_id, sealed) for member_id, sealed in await session.execute(query)]

    def open_all(self, rows: list[tuple[uuid.UUID, bytes]]) -> list[tuple[uuid.UUID, Vector]]:
        opened = ((member_id, self.open(member_id, sealed)) for member_id, sealed in rows)
        return [(member_id, vector) for member_id, vector in opened if vector is not None]

    def open(self, member_id: uuid.UUID, sealed: bytes) -> Vector | None:
        try:
            return self._sealer.open(member_id, sealed)
        except (InvalidTag, ValueError):
            log.error("sealed face vector of %s does not open; skipped", member_id)
            return None

    async def held_subjects(self) -> set[str]:
        """Every member with a vector here, as facemodel names its subjects."""
        async with self._database.sessions() as session:
            return {str(member_id) for member_id in await session.scalars(select(FaceVector.member_id))}

    async def holds(self, member_id: uuid.UUID) -> bool:
        """Whether the member's vector is here (one primary-key read)."""
        async with self._database.sessions() as session:
            return (
                await session.scalar(select(FaceVector.member_id).where(FaceVector.member_id == member_id)) is not None
            )

    async def nearest(
        self, probe: Vector, *, space: str | None, skip: Collection[uuid.UUID]
    ) -> tuple[uuid.UUID | None, float]:
        """The miss path: every stored vector not in ``skip``, brute force. It costs a full
        read of the store — which is why the gallery pre-fetches."""
        unit = probe / max(float(np.linalg.norm(probe)), 1e-12)
        best_member: uuid.UUID | None = None
        best = -1.0
        async with self._database.sessions() as session:
            rows = await session.stream(
                select(FaceVector.member_id, FaceVector.sealed).where(FaceVector.embedding_space == space)
            )
            async for chunk in rows.partitions(LOAD_CHUNK):
                candidates = [(member_id, sealed) for member_id, sealed in chunk if member_id not in skip]
                if not candidates:
                    continue
                members, matrix = self._unseal_matrix(candidates, unit.shape[0])
                if not members:
                    continue
                scores = matrix @ unit
                index = int(np.argmax(scores))
                if float(scores[index]) > best:
                    best, best_member = float(scores[index]), members[index]
        return best_member, best

    def _unseal_matrix(self, rows: list[tuple[uuid.UUID, bytes]], dimension: int) -> tuple[list[uuid.UUID], Vector]:
        members: list[uuid.UUID] = []
        vectors: list[Vector] = []
        for member_id, sealed in rows:
            vector = self.open(member_id, sealed)
            if vector is None or vector.shape[0] != dimension:
                continue
            members.append(member_id)
            vectors.append(vector / max(float(np.linalg.norm(vector)), 1e-12))
        return members, np.vstack(vectors) if vectors else np.zeros((0, dimension), np.float32)

    # -- erasures ------------------------------------------------------------------------

    async def uncleared_erasures(self) -> set[uuid.UUID]:
        """Members erased here whose galleries in facemodel are not known to be cleared."""
        async with self._database.sessions() as session:
            return set(
                await session.scalars(select(FaceTombstone.member_id).where(FaceTombstone.galleries_cleared.is_(False)))
            )

    async def mark_cleared(self, members: Collection[uuid.UUID]) -> None:
        async with self._database.transaction() as session:
            await session.execute(
                update(FaceTombstone)
                .where(FaceTombstone.member_id.in_(members), FaceTombstone.galleries_cleared.is_(False))
                .values(galleries_cleared=True)
            )

    # -- who belongs where ---------------------------------------------------------------

    async def branch_members(self, branch: str) -> set[uuid.UUID]:
        """Members of this branch whose membership has not long lapsed: the people most
        likely to walk in. Chain-wide members come in by visit ranking (or a first miss):
        putting them all in every gallery would make each gallery the whole chain."""
        horizon = utc_now() - timedelta(days=30)
        async with self._database.sessions() as session:
            rows = await session.scalars(
                select(MembershipCopy.member_id).where(
                    MembershipCopy.branch_id == branch,
                    MembershipCopy.status.in_(("active", "paused")),
                    MembershipCopy.valid_until > horizon,
                )
            )
            return set(rows)

    async def home_branches(self, session: AsyncSession, member_id: uuid.UUID) -> set[str]:
        rows = (
            await session.scalars(
                select(MembershipCopy.branch_id).where(
                    MembershipCopy.member_id == member_id, MembershipCopy.status.in_(("active", "paused"))
                )
            )
        ).all()
        return {branch for branch in rows if branch is not None}

    async def top_visitors(self, limit: int) -> list[uuid.UUID]:
        if limit == 0:
            return []
        async with self._database.sessions() as session:
            rows = await session.scalars(select(VisitScore.member_id).order_by(VisitScore.rank_key.desc()).limit(limit))
            return list(rows)

    @contextlib.asynccontextmanager
    async def _reading(self, session: AsyncSession | None) -> AsyncIterator[AsyncSession]:
        if session is not None:
            yield session
            return
        async with self._database.sessions() as own:
            yield own
