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

The store's reads are in :mod:`access.face_store`, the chain gallery in
:mod:`access.chain_gallery`, facemodel's interface in
:mod:`access.face_engine`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.ext.asyncio import AsyncSession

from access.chain_gallery import CHAIN_GALLERY, ChainGallery
from access.face_engine import FaceEngine, FaceServiceUnavailable, GalleryMissing, Identification
from access.face_metrics import CacheMetrics
from access.face_store import LOAD_CHUNK, FaceStore
from access.rules import Reason
from common.crypto import VectorSealer
from common.db import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceOutcome:
    reason: Reason  # GRANTED here means "recognised": authorization comes next
    member_id: uuid.UUID | None
    similarity: float | None
    model: str | None
    cache: str | None  # "hit", "miss" or None when nobody was recognised
    timings_ms: dict[str, float] = field(default_factory=dict)
    detail: str | None = None  # what to fix, for poor quality ("too_dark", "face_turned", ...)


def gallery_name(branch_id: str) -> str:
    return f"access-{branch_id}"


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
        self._store = FaceStore(database=database, sealer=sealer)
        self._engine = engine
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
        self._chain = ChainGallery(
            engine=engine,
            store=self._store,
            metrics=metrics,
            wanted=chain_gallery,
            is_erasing=lambda member_id: member_id in self.erasing_members,
        )

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
        if self._chain.held_fewer_than_expected(sizes):
            log.warning("facemodel holds fewer vectors than expected in the chain gallery; reloading")
            self._chain.lost()
        self.load_chain_soon()
        if self.erasing_members:
            await self.clear_erased()  # facemodel is answering again: finish what it missed

    async def load(self, branch: str, prefetched: list[uuid.UUID] | None = None) -> None:
        if self.space is None:
            self.space = await self._engine.embedding_space()
        members = await self._store.branch_members(branch)
        wanted = members | set(prefetched if prefetched is not None else await self._top_visitors())
        found = await self._store.vectors(wanted, space=self.space)
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
        await self._chain.put(member_id, vector, space=space)
        homes = await self._store.home_branches(session, member_id)
        for branch in self.branches:
            if branch in homes or member_id in self.hot[branch]:
                await self._hold(branch, {member_id: vector})

    def erasing(self, member_id: uuid.UUID) -> None:
        """The member's vector is being deleted here: from now on no match on it counts."""
        self.erasing_members.add(member_id)
        self._chain.erasing(member_id)
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
        pending = await self._store.uncleared_erasures()
        for member_id in pending:
            for gallery in self._galleries():
                await self._engine.remove(gallery, str(member_id))
        if pending:
            await self._store.mark_cleared(pending)
            log.info("erasures applied in facemodel: %d", len(pending))
        self.erasing_members -= pending

    async def reconcile(self) -> None:
        """Make facemodel's galleries hold nothing this store does not: a vector it kept
        across an erasure it never heard of (it was away, or access's erase event was
        parked) goes now. Start-up, and periodic."""
        await self.clear_erased()
        held = await self._store.held_subjects()
        for branch in self.branches:
            stale = await self._engine.subjects(gallery_name(branch)) - held
            for subject in stale:
                await self._engine.remove(gallery_name(branch), subject)
            if stale:
                log.warning("removed %d vectors from %s that access no longer holds", len(stale), branch)
                self.hot[branch] = {member for member in self.hot[branch] if str(member) in held}
        if self._chain.ready:
            await self._chain.reconcile(space=self._space())

    # -- the chain gallery ---------------------------------------------------------------

    @property
    def chain(self) -> set[uuid.UUID]:
        return self._chain.members

    @property
    def chain_ready(self) -> bool:
        return self._chain.ready

    def load_chain_soon(self) -> None:
        self._chain.load_soon(space=self._embedding_space)

    async def _embedding_space(self) -> str:
        if self.space is None:
            self.space = await self._engine.embedding_space()
        return self.space

    async def close(self) -> None:
        await self._chain.close()

    async def _chain_search(self, probe: NDArray[np.float32], threshold: float) -> tuple[uuid.UUID | None, float]:
        """The best member of the whole store still held here, from facemodel's chain
        gallery; a match on a vector erased here (facemodel not told yet) never counts."""
        for subject, similarity in await self._chain.matches(probe, space=self._space()):
            if similarity < threshold:
                return None, similarity
            member_id = uuid.UUID(subject)
            if await self._still_held(member_id):
                return member_id, similarity
            log.warning("the chain gallery matched a vector access no longer holds; removing it")
            self.drop_soon(member_id)
        return None, -1.0

    async def _remember_pending_erasures(self) -> None:
        self.erasing_members |= await self._store.uncleared_erasures()

    async def _still_held(self, member_id: uuid.UUID) -> bool:
        """Whether this store still holds the member's vector (one primary-key read)."""
        if member_id in self.erasing_members:
            return False
        return await self._store.holds(member_id)

    async def membership_changed(self, session: AsyncSession, member_id: uuid.UUID) -> None:
        homes = await self._store.home_branches(session, member_id)
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
                self._chain.lost()
                self.load_chain_soon()
            else:
                self.metrics.miss_lookups.labels("chain").inc()
                timings["chain_search"] = round((time.perf_counter() - started) * 1000, 2)
                return found
        self.metrics.miss_lookups.labels("scan").inc()
        found = await self._store.nearest(probe, space=self.space, skip=self.hot.get(branch, set()))
        timings["cold_search"] = round((time.perf_counter() - started) * 1000, 2)
        return found

    # -- internals -----------------------------------------------------------------------

    def _galleries(self) -> list[str]:
        return [*(gallery_name(branch) for branch in self.branches), CHAIN_GALLERY]

    def _space(self) -> str:
        if self.space is None:
            raise FaceServiceUnavailable("facemodel's embedding space is not known yet")
        return self.space

    async def _promote(self, branch: str, members: list[uuid.UUID], session: AsyncSession | None = None) -> None:
        if members and self.space is not None:
            await self._hold(branch, dict(await self._store.vectors(set(members), space=self.space, session=session)))

    async def _hold(self, branch: str, vectors: dict[uuid.UUID, NDArray[np.float32]]) -> None:
        """Put ``vectors`` into the branch gallery and remember that it holds them."""
        if not vectors or self.space is None:
            return
        await self._engine.put_vectors(
            gallery_name(branch), self.space, {str(member_id): vector for member_id, vector in vectors.items()}
        )
        self.hot[branch].update(vectors)
        self.metrics.gallery_size.labels(branch).set(len(self.hot[branch]))

    async def _top_visitors(self) -> list[uuid.UUID]:
        return await self._store.top_visitors(self._prefetch)
