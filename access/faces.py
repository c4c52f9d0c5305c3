"""Face identification at the door, and the face-vector cache behind it.

Every vector announced by auth is kept (sealed) in access's database — the cold store.
What facemodel holds in memory for a branch — the hot gallery — is the members of that
branch plus the chain's most recent and frequent visitors (the pre-fetch), so a member
visiting another branch is usually matched in one step. A face not matched hot is looked
up cold; if found there it counts as a cache miss and is promoted into the gallery.

The cold lookup is itself a gallery: facemodel also holds every vector of this store (the
chain gallery), filled in the background at start-up and kept current by the same events,
so a miss costs one more scan in facemodel, not a read and decryption of the whole store.
Until the chain gallery is complete (start-up, a facemodel restart) a miss falls back to
scanning the store.

Erasure always wins. An erased face is deleted here first (with a tombstone that refuses
late or replayed enrolments), whether facemodel is reachable or not; facemodel is then
told, and its galleries are reconciled against this store at start-up, after it comes
back and periodically. A gallery match counts only if this store still holds the vector,
so a vector facemodel kept while away cannot open the door in the meantime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np
from cryptography.exceptions import InvalidTag
from numpy.typing import NDArray
from prometheus_client import Counter, Gauge
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from access.models import FaceTombstone, FaceVector, MembershipCopy, VisitScore
from access.rules import Reason
from access.settings import AccessSettings
from common.crypto import VectorSealer
from common.db import Database
from common.events.envelope import utc_now
from common.observability import Metrics
from common.sealing import reseal_rows

log = logging.getLogger(__name__)

LOAD_CHUNK = 2000
# Never a branch's gallery name: "~" is not allowed in a branch id.
CHAIN_GALLERY = "access~chain"
# A chain match is checked against the store; the next ones stand in if the first was erased.
CHAIN_CANDIDATES = 3
# Fixed forever: vectors sealed under it must still open after an upgrade.
FACE_SEALING_PURPOSE = b"smartgym-access-face-v1"


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


@dataclass(frozen=True)
class FaceOutcome:
    reason: Reason  # GRANTED here means "recognised": authorization comes next
    member_id: uuid.UUID | None
    similarity: float | None
    model: str | None
    cache: str | None  # "hit", "miss" or None when nobody was recognised
    timings_ms: dict[str, float] = field(default_factory=dict)
    detail: str | None = None  # what to fix, for poor quality ("too_dark", "face_turned", ...)


class CacheMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.lookups = Counter(
            "access_face_cache_lookups",
            "Recognised faces by where they were found (hit: branch gallery; miss: cold store).",
            ["result"],
            registry=metrics.registry,
        )
        self.hit_ratio = Gauge(
            "access_face_cache_hit_ratio", "Share of recognised faces found in the gallery.", registry=metrics.registry
        )
        self.gallery_size = Gauge(
            "access_face_gallery_members", "Members in a branch's hot gallery.", ["branch"], registry=metrics.registry
        )
        self.miss_lookups = Counter(
            "access_face_miss_lookups",
            "Faces looked up past the branch gallery, by how (chain: facemodel's chain gallery; "
            "scan: the sealed store read and decrypted, while the chain gallery is not complete).",
            ["via"],
            registry=metrics.registry,
        )
        self.chain_size = Gauge(
            "access_face_chain_gallery_members", "Vectors in facemodel's chain gallery.", registry=metrics.registry
        )
        self.chain_ready = Gauge(
            "access_face_chain_gallery_ready",
            "1 while the chain gallery holds the whole store (misses are looked up there).",
            registry=metrics.registry,
        )
        self.hits = 0
        self.misses = 0

    def record(self, hit: bool) -> None:
        self.hits += hit
        self.misses += not hit
        self.lookups.labels("hit" if hit else "miss").inc()
        self.hit_ratio.set(self.hits / (self.hits + self.misses))


def gallery_name(branch_id: str) -> str:
    return f"access-{branch_id}"


def version_at(moment: datetime) -> int:
    """An enrolment version for a moment (auth's versions are epoch microseconds)."""
    return int(moment.timestamp() * 1_000_000)


def rank_key(score: float, at: datetime, *, half_life_days: float) -> float:
    tau_s = half_life_days * 86_400 / math.log(2)
    return math.log(score) + at.timestamp() / tau_s


def decayed(score: float, since: datetime, now: datetime, *, half_life_days: float) -> float:
    elapsed_s = max(0.0, (now - since).total_seconds())
    return float(score * 0.5 ** (elapsed_s / (half_life_days * 86_400)))


async def reseal_stored_faces(settings: AccessSettings) -> tuple[int, int]:
    """Key rotation: every vector of the cold store re-sealed under the current biometric
    sealing key. Returns (re-sealed, total); safe to run again after an interruption."""
    database = Database(settings.database_url("access"))
    try:
        sealer = VectorSealer(settings.sealing_keys(), purpose=FACE_SEALING_PURPOSE)
        return await reseal_rows(database, FaceVector, FaceVector.member_id, FaceVector.sealed, sealer)
    finally:
        await database.engine.dispose()


class FaceCache:
    def __init__(
        self,
        *,
        database: Database,
        engine: FaceEngine,
        sealer: VectorSealer,
        branches: Iterable[str],
        prefetch: int,
        near_miss_margin: float,
        metrics: CacheMetrics,
        chain_gallery: bool = True,
    ) -> None:
        self._database = database
        self._engine = engine
        self._sealer = sealer
        self.branches = sorted(branches)
        self._prefetch = prefetch
        self._near_miss_margin = near_miss_margin
        self.metrics = metrics
        self.hot: dict[str, set[uuid.UUID]] = {branch: set() for branch in self.branches}
        self.space: str | None = None
        self.loaded = False
        # Erased here, not yet confirmed gone from facemodel (mirrors uncleared tombstones).
        self.erasing_members: set[uuid.UUID] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # The chain gallery: who facemodel holds in it, whether that is the whole store,
        # and, while it is being filled, the latest change events made to each member (the
        # loader's older reads must not overwrite them; None: erased).
        self.chain: set[uuid.UUID] = set()
        self.chain_ready = False
        self._chain_wanted = chain_gallery
        self._chain_changes: dict[uuid.UUID, NDArray[np.float32] | None] | None = None
        self._chain_loader: asyncio.Task[None] | None = None

    # -- loading -------------------------------------------------------------------------

    async def load_all(self) -> None:
        """Fill every branch gallery (start-up, and after facemodel lost its memory), and
        take out of facemodel whatever this store no longer holds."""
        await self._remember_pending_erasures()
        self.space = await self._engine.embedding_space()
        prefetched = await self._top_visitors()
        for branch in self.branches:
            await self.load(branch, prefetched)
        await self.reconcile()
        self.loaded = True
        self.load_chain_soon()

    async def ensure_loaded(self) -> None:
        """Periodic: load if start-up could not (facemodel still starting), and reload a
        gallery facemodel no longer holds in full (its container restarted)."""
        if not self.loaded:
            await self.load_all()
            return
        sizes = await self._engine.gallery_sizes()
        for branch in self.branches:
            if sizes.get(gallery_name(branch), 0) < len(self.hot[branch]):
                log.warning("facemodel holds fewer vectors than expected for %s; reloading", branch)
                await self.load(branch)
        if self.chain_ready and sizes.get(CHAIN_GALLERY, 0) < len(self.chain):
            log.warning("facemodel holds fewer vectors than expected in the chain gallery; reloading")
            self.chain_lost()
        self.load_chain_soon()
        if self.erasing_members:
            await self.clear_erased()  # facemodel is answering again: finish what it missed

    async def load(self, branch: str, prefetched: list[uuid.UUID] | None = None) -> None:
        if self.space is None:
            self.space = await self._engine.embedding_space()
        members = await self._branch_members(branch)
        wanted = members | set(prefetched if prefetched is not None else await self._top_visitors())
        found = await self._vectors(wanted)
        self.hot[branch] = set()
        for start in range(0, len(found), LOAD_CHUNK):
            await self._hold(branch, dict(found[start : start + LOAD_CHUNK]))
        log.info("branch %s gallery loaded with %d members", branch, len(self.hot[branch]))

    async def add_branch(self, branch: str) -> None:
        """Serve one more branch (a gate added while access runs)."""
        if branch in self.hot:
            return
        self.branches = sorted([*self.branches, branch])
        self.hot[branch] = set()
        if self.loaded:
            await self.load(branch)

    async def refresh_prefetch(self) -> None:
        """Add newly frequent visitors to every gallery (periodic)."""
        prefetched = await self._top_visitors()
        for branch in self.branches:
            await self._promote(branch, [member for member in prefetched if member not in self.hot[branch]])

    # -- events --------------------------------------------------------------------------

    # Handlers pass their own (uncommitted) session: what the event just stored must be
    # visible to what it triggers, even when several events share one transaction.

    async def enrolled(
        self, session: AsyncSession, member_id: uuid.UUID, vector: NDArray[np.float32], space: str
    ) -> None:
        """A new or replaced vector goes wherever the member belongs (or already was)."""
        self.erasing_members.discard(member_id)  # re-enrolled after an erasure
        if self.space is not None and space != self.space:
            log.warning("vector for %s is in %s, facemodel serves %s; kept cold only", member_id, space, self.space)
            return
        await self._chain_put(member_id, vector)
        homes = await self._home_branches(session, member_id)
        for branch in self.branches:
            if branch in homes or member_id in self.hot[branch]:
                await self._hold(branch, {member_id: vector})

    def erasing(self, member_id: uuid.UUID) -> None:
        """The member's vector is being deleted here: from now on no match on it counts."""
        self.erasing_members.add(member_id)
        self.chain.discard(member_id)
        self.metrics.chain_size.set(len(self.chain))
        if self._chain_changes is not None:
            self._chain_changes[member_id] = None
        for branch in self.branches:
            self.hot[branch].discard(member_id)
            self.metrics.gallery_size.labels(branch).set(len(self.hot[branch]))

    def forget_soon(self, member_id: uuid.UUID) -> None:
        """After the erasure committed: tell facemodel now, without holding up the event
        (if facemodel is away, the keeper finishes it once it answers)."""
        task = asyncio.create_task(self._clear_quietly(), name=f"access-erase:{member_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def drop_soon(self, member_id: uuid.UUID) -> None:
        """facemodel matched a vector this store no longer holds (it missed the erasure,
        whose tombstone may already count as cleared): take it out of every gallery now
        rather than at the next reconciliation."""
        self.erasing(member_id)
        task = asyncio.create_task(self._drop_quietly(member_id), name=f"access-drop:{member_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drop_quietly(self, member_id: uuid.UUID) -> None:
        try:
            for gallery in self._galleries():
                await self._engine.remove(gallery, str(member_id))
            await self.clear_erased()
        except Exception as exc:  # facemodel away: the reconciler removes it later
            log.warning("facemodel not told to drop an erased vector yet (%s)", type(exc).__name__)

    async def _clear_quietly(self) -> None:
        try:
            await self.clear_erased()
        except Exception as exc:  # facemodel away: the periodic keeper retries
            log.warning("facemodel not told of an erasure yet (%s); retrying later", type(exc).__name__)

    async def clear_erased(self) -> None:
        """Remove every erased-but-not-yet-cleared member from every gallery, then mark
        their tombstones cleared. Safe to repeat; raises if facemodel is unreachable."""
        async with self._database.sessions() as session:
            pending = set(
                await session.scalars(select(FaceTombstone.member_id).where(FaceTombstone.galleries_cleared.is_(False)))
            )
        for member_id in pending:
            for gallery in self._galleries():
                await self._engine.remove(gallery, str(member_id))
        if pending:
            async with self._database.transaction() as session:
                await session.execute(
                    update(FaceTombstone)
                    .where(FaceTombstone.member_id.in_(pending), FaceTombstone.galleries_cleared.is_(False))
                    .values(galleries_cleared=True)
                )
            log.info("erasures applied in facemodel: %d", len(pending))
        self.erasing_members -= pending

    async def reconcile(self) -> None:
        """Make facemodel's galleries hold nothing this store does not: a vector it kept
        across an erasure it never heard of (it was away, or access's erase event was
        parked) goes now. Start-up, and periodic."""
        await self.clear_erased()
        async with self._database.sessions() as session:
            held = {str(member_id) for member_id in await session.scalars(select(FaceVector.member_id))}
        for branch in self.branches:
            stale = await self._engine.subjects(gallery_name(branch)) - held
            for subject in stale:
                await self._engine.remove(gallery_name(branch), subject)
            if stale:
                log.warning("removed %d vectors from %s that access no longer holds", len(stale), branch)
                self.hot[branch] = {member for member in self.hot[branch] if str(member) in held}
        if self.chain_ready:
            await self._reconcile_chain()

    async def _reconcile_chain(self) -> None:
        """The chain gallery holds exactly this store: what it kept across an erasure goes,
        what it missed (an enrolment while facemodel was away) comes. facemodel is asked
        first: a member enrolled or erased between the two reads is then put or removed as
        the store says."""
        subjects = await self._engine.subjects(CHAIN_GALLERY)
        async with self._database.sessions() as session:
            held = {str(member_id) for member_id in await session.scalars(select(FaceVector.member_id))}
        for subject in subjects - held:
            await self._engine.remove(CHAIN_GALLERY, subject)
        missing = {uuid.UUID(subject) for subject in held - subjects} - self.erasing_members
        found = await self._vectors(missing)
        for start in range(0, len(found), LOAD_CHUNK):
            await self._engine.put_vectors(
                CHAIN_GALLERY,
                self._space(),
                {str(member_id): vector for member_id, vector in found[start : start + LOAD_CHUNK]},
            )
        self.chain -= {uuid.UUID(subject) for subject in subjects - held}
        self.chain |= {member_id for member_id, _ in found}
        self.metrics.chain_size.set(len(self.chain))
        if subjects - held or found:
            log.warning("chain gallery reconciled: %d removed, %d added", len(subjects - held), len(found))

    # -- the chain gallery ---------------------------------------------------------------

    def load_chain_soon(self) -> None:
        """Fill the chain gallery in the background unless it is complete or being filled
        (the door keeps deciding meanwhile, misses by scanning the store)."""
        if not self._chain_wanted or self.chain_ready:
            return
        if self._chain_loader is not None and not self._chain_loader.done():
            return
        self._chain_loader = asyncio.create_task(self._load_chain_quietly(), name="access-chain-gallery")

    def chain_lost(self) -> None:
        """facemodel no longer holds the chain gallery in full (restarted, or a model of
        another embedding space): misses scan the store until it is filled again."""
        self.chain_ready = False
        self.metrics.chain_ready.set(0)

    async def close(self) -> None:
        loader = self._chain_loader
        if loader is not None and not loader.done():
            loader.cancel()
            await asyncio.gather(loader, return_exceptions=True)

    async def _load_chain_quietly(self) -> None:
        try:
            await self.load_chain()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # facemodel away or restarting: the keeper starts it again
            log.warning("chain gallery not loaded (%s); retrying later", type(exc).__name__)
        finally:
            self._chain_changes = None

    async def load_chain(self) -> None:
        """Every vector of this store into facemodel's chain gallery, one page at a time
        (each its own short read, opened in a worker thread so the door's requests keep the
        event loop). Events that change a member meanwhile win over the pages."""
        self.chain_lost()
        started = time.perf_counter()
        changes: dict[uuid.UUID, NDArray[np.float32] | None] = {}
        self._chain_changes = changes
        space = self.space if self.space is not None else await self._engine.embedding_space()
        self.space = space
        self.chain = set()
        after: uuid.UUID | None = None
        while True:
            async with self._database.sessions() as session:
                query = (
                    select(FaceVector.member_id, FaceVector.sealed)
                    .where(FaceVector.embedding_space == space)
                    .order_by(FaceVector.member_id)
                    .limit(LOAD_CHUNK)
                )
                if after is not None:
                    query = query.where(FaceVector.member_id > after)
                page = [(member_id, sealed) for member_id, sealed in await session.execute(query)]
            if not page:
                break
            after = page[-1][0]
            opened = await asyncio.to_thread(self._open_all, page)
            vectors = {
                member_id: vector
                for member_id, vector in opened
                if member_id not in changes and member_id not in self.erasing_members
            }
            if vectors:
                await self._engine.put_vectors(
                    CHAIN_GALLERY, space, {str(member_id): vector for member_id, vector in vectors.items()}
                )
                self.chain.update(vectors)
                self.metrics.chain_size.set(len(self.chain))
        # What events changed while the pages were read, in its latest state (an event that
        # arrives during this catch-up is applied by its handler and recorded again).
        while changes:
            member_id, vector = changes.popitem()
            if vector is None:
                await self._engine.remove(CHAIN_GALLERY, str(member_id))
                self.chain.discard(member_id)
            else:
                await self._engine.put_vectors(CHAIN_GALLERY, space, {str(member_id): vector})
                self.chain.add(member_id)
        self._chain_changes = None
        if (await self._engine.gallery_sizes()).get(CHAIN_GALLERY, 0) < len(self.chain):
            # facemodel restarted while the pages went in: what it holds is not the store.
            raise GalleryMissing(CHAIN_GALLERY)
        self.chain_ready = True
        self.metrics.chain_ready.set(1)
        self.metrics.chain_size.set(len(self.chain))
        log.info("chain gallery loaded with %d vectors in %.1f s", len(self.chain), time.perf_counter() - started)

    async def _chain_put(self, member_id: uuid.UUID, vector: NDArray[np.float32]) -> None:
        if self._chain_changes is not None:
            self._chain_changes[member_id] = vector
        if not (self.chain_ready or self._chain_changes is not None):
            return  # not being filled: the next load reads it from the store
        try:
            await self._engine.put_vectors(CHAIN_GALLERY, self._space(), {str(member_id): vector})
        except (FaceServiceUnavailable, GalleryMissing) as exc:
            # The enrolment stands (it is in the store); the chain gallery is reloaded once
            # facemodel answers, and misses scan the store until then.
            log.warning("chain gallery missed an enrolment (%s); reloading it later", type(exc).__name__)
            self.chain_lost()
            return
        self.chain.add(member_id)
        self.metrics.chain_size.set(len(self.chain))

    async def _chain_search(self, probe: NDArray[np.float32], threshold: float) -> tuple[uuid.UUID | None, float]:
        """The best member of the whole store still held here, from facemodel's chain
        gallery; a match on a vector erased here (facemodel not told yet) never counts."""
        matches = await self._engine.search(CHAIN_GALLERY, self._space(), probe, k=CHAIN_CANDIDATES)
        for subject, similarity in matches:
            if similarity < threshold:
                return None, similarity
            member_id = uuid.UUID(subject)
            if await self._still_held(member_id):
                return member_id, similarity
            log.warning("the chain gallery matched a vector access no longer holds; removing it")
            self.drop_soon(member_id)
        return None, -1.0

    async def _remember_pending_erasures(self) -> None:
        async with self._database.sessions() as session:
            self.erasing_members |= set(
                await session.scalars(select(FaceTombstone.member_id).where(FaceTombstone.galleries_cleared.is_(False)))
            )

    async def _still_held(self, member_id: uuid.UUID) -> bool:
        """Whether this store still holds the member's vector (one primary-key read)."""
        if member_id in self.erasing_members:
            return False
        async with self._database.sessions() as session:
            return (
                await session.scalar(select(FaceVector.member_id).where(FaceVector.member_id == member_id)) is not None
            )

    async def membership_changed(self, session: AsyncSession, member_id: uuid.UUID) -> None:
        homes = await self._home_branches(session, member_id)
        missing = [branch for branch in self.branches if branch in homes and member_id not in self.hot[branch]]
        for branch in missing:
            await self._promote(branch, [member_id], session)

    # -- at the door ---------------------------------------------------------------------

    async def identify(
        self, branch: str, image: bytes, content_type: str, *, burst: Sequence[bytes] | None = None
    ) -> FaceOutcome:
        """Who is at the door. With ``burst`` (liveness asked), a burst that is not live
        is refused before anybody is matched."""
        started = time.perf_counter()
        engine = self._engine

        async def call(gallery: str | None) -> Identification:
            if burst is not None:
                return await engine.identify_live(gallery, burst)
            if gallery is None:
                return await engine.analyse(image, content_type)
            return await engine.identify(gallery, image, content_type)

        try:
            found = await call(gallery_name(branch))
        except GalleryMissing:
            if self.hot.get(branch):
                log.warning("facemodel lost gallery %s; reloading", branch)
                await self.load(branch)
                found = await call(gallery_name(branch))
            else:
                found = await call(None)
        timings = dict(found.timings_ms)
        timings["facemodel_call"] = round((time.perf_counter() - started) * 1000, 2)
        if burst is not None and not found.liveness_ok:
            detail = found.liveness_code or "liveness_failed"
            return FaceOutcome(Reason.LIVENESS_FAILED, None, None, found.model, None, timings, detail=detail)
        if not found.quality_ok or found.embedding is None:
            reason = Reason.NO_FACE if found.quality_code in (None, "no_face") else Reason.POOR_QUALITY
            return FaceOutcome(reason, None, None, found.model, None, timings, detail=found.quality_code)
        probe = found.embedding
        if (
            found.best_subject is not None
            and found.best_similarity is not None
            and found.best_similarity >= found.threshold
        ):
            member_id = uuid.UUID(found.best_subject)
            if await self._still_held(member_id):
                self.metrics.record(hit=True)
                return FaceOutcome(Reason.GRANTED, member_id, found.best_similarity, found.model, "hit", timings)
            # facemodel still holds an erased vector: not a match, and it goes now.
            log.warning("facemodel matched a vector access no longer holds; removing it")
            self.drop_soon(member_id)
            found = replace(found, best_subject=None, best_similarity=None)
        cold_member, cold_similarity = await self._miss_lookup(branch, probe, found.threshold, timings)
        if cold_member is not None and cold_similarity >= found.threshold:
            self.metrics.record(hit=False)
            await self._promote(branch, [cold_member])
            return FaceOutcome(Reason.GRANTED, cold_member, cold_similarity, found.model, "miss", timings)
        best = max(value for value in (found.best_similarity, cold_similarity, -1.0) if value is not None)
        near = best >= found.threshold - self._near_miss_margin
        reason = Reason.MATCH_BELOW_THRESHOLD if near else Reason.FACE_NOT_RECOGNISED
        return FaceOutcome(reason, None, round(best, 4) if best > -1 else None, found.model, None, timings)

    async def _miss_lookup(
        self, branch: str, probe: NDArray[np.float32], threshold: float, timings: dict[str, float]
    ) -> tuple[uuid.UUID | None, float]:
        """Past the branch gallery: the chain gallery when it is complete, else the store."""
        started = time.perf_counter()
        if self.chain_ready:
            try:
                found = await self._chain_search(probe, threshold)
            except GalleryMissing:
                log.warning("facemodel lost the chain gallery; scanning the store until it is reloaded")
                self.chain_lost()
                self.load_chain_soon()
            else:
                self.metrics.miss_lookups.labels("chain").inc()
                timings["chain_search"] = round((time.perf_counter() - started) * 1000, 2)
                return found
        self.metrics.miss_lookups.labels("scan").inc()
        found = await self._cold_search(branch, probe)
        timings["cold_search"] = round((time.perf_counter() - started) * 1000, 2)
        return found

    # -- internals -----------------------------------------------------------------------

    def _galleries(self) -> list[str]:
        return [*(gallery_name(branch) for branch in self.branches), CHAIN_GALLERY]

    def _space(self) -> str:
        if self.space is None:
            raise FaceServiceUnavailable("facemodel's embedding space is not known yet")
        return self.space

    def _open_all(self, rows: list[tuple[uuid.UUID, bytes]]) -> list[tuple[uuid.UUID, NDArray[np.float32]]]:
        opened = ((member_id, self._open(member_id, sealed)) for member_id, sealed in rows)
        return [(member_id, vector) for member_id, vector in opened if vector is not None]

    async def _promote(self, branch: str, members: list[uuid.UUID], session: AsyncSession | None = None) -> None:
        if members and self.space is not None:
            await self._hold(branch, dict(await self._vectors(set(members), session)))

    async def _hold(self, branch: str, vectors: dict[uuid.UUID, NDArray[np.float32]]) -> None:
        """Put ``vectors`` into the branch gallery and remember that it holds them."""
        if not vectors or self.space is None:
            return
        await self._engine.put_vectors(
            gallery_name(branch), self.space, {str(member_id): vector for member_id, vector in vectors.items()}
        )
        self.hot[branch].update(vectors)
        self.metrics.gallery_size.labels(branch).set(len(self.hot[branch]))

    async def _cold_search(self, branch: str, probe: NDArray[np.float32]) -> tuple[uuid.UUID | None, float]:
        """The miss path: every stored vector not in the branch gallery, brute force. It
        costs a full read of the store — which is why the gallery pre-fetches."""
        hot = self.hot.get(branch, set())
        unit = probe / max(float(np.linalg.norm(probe)), 1e-12)
        best_member: uuid.UUID | None = None
        best = -1.0
        async with self._database.sessions() as session:
            rows = await session.stream(
                select(FaceVector.member_id, FaceVector.sealed).where(FaceVector.embedding_space == self.space)
            )
            async for chunk in rows.partitions(LOAD_CHUNK):
                candidates = [(member_id, sealed) for member_id, sealed in chunk if member_id not in hot]
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

    def _unseal_matrix(
        self, rows: list[tuple[uuid.UUID, bytes]], dimension: int
    ) -> tuple[list[uuid.UUID], NDArray[np.float32]]:
        members: list[uuid.UUID] = []
        vectors: list[NDArray[np.float32]] = []
        for member_id, sealed in rows:
            vector = self._open(member_id, sealed)
            if vector is None or vector.shape[0] != dimension:
                continue
            members.append(member_id)
            vectors.append(vector / max(float(np.linalg.norm(vector)), 1e-12))
        return members, np.vstack(vectors) if vectors else np.zeros((0, dimension), np.float32)

    def _open(self, member_id: uuid.UUID, sealed: bytes) -> NDArray[np.float32] | None:
        try:
            return self._sealer.open(member_id, sealed)
        except (InvalidTag, ValueError):
            log.error("sealed face vector of %s does not open; skipped", member_id)
            return None

    async def _vectors(
        self, members: set[uuid.UUID], session: AsyncSession | None = None
    ) -> list[tuple[uuid.UUID, NDArray[np.float32]]]:
        found: list[tuple[uuid.UUID, NDArray[np.float32]]] = []
        ordered = sorted(members)
        async with self._reading(session) as session:
            for start in range(0, len(ordered), LOAD_CHUNK):
                rows = await session.execute(
                    select(FaceVector.member_id, FaceVector.sealed).where(
                        FaceVector.member_id.in_(ordered[start : start + LOAD_CHUNK]),
                        FaceVector.embedding_space == self.space,
                    )
                )
                for member_id, sealed in rows:
                    vector = self._open(member_id, sealed)
                    if vector is not None:
                        found.append((member_id, vector))
        return found

    async def _branch_members(self, branch: str) -> set[uuid.UUID]:
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

    @contextlib.asynccontextmanager
    async def _reading(self, session: AsyncSession | None) -> AsyncIterator[AsyncSession]:
        if session is not None:
            yield session
            return
        async with self._database.sessions() as own:
            yield own

    async def _home_branches(self, session: AsyncSession, member_id: uuid.UUID) -> set[str]:
        rows = (
            await session.scalars(
                select(MembershipCopy.branch_id).where(
                    MembershipCopy.member_id == member_id, MembershipCopy.status.in_(("active", "paused"))
                )
            )
        ).all()
        return {branch for branch in rows if branch is not None}

    async def _top_visitors(self) -> list[uuid.UUID]:
        if self._prefetch == 0:
            return []
        async with self._database.sessions() as session:
            rows = await session.scalars(
                select(VisitScore.member_id).order_by(VisitScore.rank_key.desc()).limit(self._prefetch)
            )
            return list(rows)
