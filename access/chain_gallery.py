"""facemodel's chain gallery: every vector of access's store, so a face missed by the
branch gallery costs one more scan in facemodel instead of a read and decryption of the
whole store.

It is filled in the background (start-up, after facemodel lost it), one page of the store
at a time, and kept current by the same events as the branch galleries. Events that
change a member while the pages are read win over the pages. Until it holds the whole
store (:attr:`ChainGallery.ready`) the face cache falls back to scanning the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import numpy as np
from numpy.typing import NDArray

from access.face_engine import FaceEngine, FaceServiceUnavailable, GalleryMissing
from access.face_metrics import CacheMetrics
from access.face_store import LOAD_CHUNK, FaceStore

log = logging.getLogger(__name__)

# Never a branch's gallery name: "~" is not allowed in a branch id.
CHAIN_GALLERY = "access~chain"
# A chain match is checked against the store; the next ones stand in if the first was erased.
CHAIN_CANDIDATES = 3

Vector = NDArray[np.float32]


class ChainGallery:
    def __init__(
        self,
        *,
        engine: FaceEngine,
        store: FaceStore,
        metrics: CacheMetrics,
        wanted: bool,
        is_erasing: Callable[[uuid.UUID], bool],
    ) -> None:
        self._engine = engine
        self._store = store
        self._metrics = metrics
        self._wanted = wanted
        self._is_erasing = is_erasing
        self.members: set[uuid.UUID] = set()
        self.ready = False
        # While the gallery is being filled: the latest change events made to each member
        # (the loader's older reads must not overwrite them; None: erased).
        self._changes: dict[uuid.UUID, Vector | None] | None = None
        self._loader: asyncio.Task[None] | None = None

    def load_soon(self, *, space: Callable[[], Awaitable[str]]) -> None:
        """Fill the gallery in the background unless it is complete or being filled (the
        door keeps deciding meanwhile, misses by scanning the store)."""
        if not self._wanted or self.ready:
            return
        if self._loader is not None and not self._loader.done():
            return
        self._loader = asyncio.create_task(self._load_quietly(space), name="access-chain-gallery")

    def lost(self) -> None:
        """facemodel no longer holds the gallery in full (restarted, or a model of another
        embedding space): misses scan the store until it is filled again."""
        self.ready = False
        self._metrics.chain_ready.set(0)

    def held_fewer_than_expected(self, sizes: dict[str, int]) -> bool:
        return self.ready and sizes.get(CHAIN_GALLERY, 0) < len(self.members)

    async def close(self) -> None:
        loader = self._loader
        if loader is not None and not loader.done():
            loader.cancel()
            await asyncio.gather(loader, return_exceptions=True)

    async def _load_quietly(self, space: Callable[[], Awaitable[str]]) -> None:
        try:
            await self.load(space=await space())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # facemodel away or restarting: the keeper starts it again
            log.warning("chain gallery not loaded (%s); retrying later", type(exc).__name__)
        finally:
            self._changes = None

    async def load(self, *, space: str) -> None:
        """Every vector of the store into the gallery, one page at a time (each its own
        short read, opened in a worker thread so the door's requests keep the event loop)."""
        self.lost()
        started = time.perf_counter()
        changes: dict[uuid.UUID, Vector | None] = {}
        self._changes = changes
        self.members = set()
        after: uuid.UUID | None = None
        while True:
            page = await self._store.page(space=space, after=after)
            if not page:
                break
            after = page[-1][0]
            opened = await asyncio.to_thread(self._store.open_all, page)
            vectors = {
                member_id: vector
                for member_id, vector in opened
                if member_id not in changes and not self._is_erasing(member_id)
            }
            if vectors:
                await self._engine.put_vectors(
                    CHAIN_GALLERY, space, {str(member_id): vector for member_id, vector in vectors.items()}
                )
                self.members.update(vectors)
                self._metrics.chain_size.set(len(self.members))
        # What events changed while the pages were read, in its latest state (an event that
        # arrives during this catch-up is applied by its handler and recorded again).
        while changes:
            member_id, vector = changes.popitem()
            if vector is None:
                await self._engine.remove(CHAIN_GALLERY, str(member_id))
                self.members.discard(member_id)
            else:
                await self._engine.put_vectors(CHAIN_GALLERY, space, {str(member_id): vector})
                self.members.add(member_id)
        self._changes = None
        if (await self._engine.gallery_sizes()).get(CHAIN_GALLERY, 0) < len(self.members):
            # facemodel restarted while the pages went in: what it holds is not the store.
            raise GalleryMissing(CHAIN_GALLERY)
        self.ready = True
        self._metrics.chain_ready.set(1)
        self._metrics.chain_size.set(len(self.members))
        log.info("chain gallery loaded with %d vectors in %.1f s", len(self.members), time.perf_counter() - started)

    async def put(self, member_id: uuid.UUID, vector: Vector, *, space: str) -> None:
        """A new or replaced vector (an enrolment event)."""
        if self._changes is not None:
            self._changes[member_id] = vector
        if not (self.ready or self._changes is not None):
            return  # not being filled: the next load reads it from the store
        try:
            await self._engine.put_vectors(CHAIN_GALLERY, space, {str(member_id): vector})
        except (FaceServiceUnavailable, GalleryMissing) as exc:
            # The enrolment stands (it is in the store); the gallery is reloaded once
            # facemodel answers, and misses scan the store until then.
            log.warning("chain gallery missed an enrolment (%s); reloading it later", type(exc).__name__)
            self.lost()
            return
        self.members.add(member_id)
        self._metrics.chain_size.set(len(self.members))

    def erasing(self, member_id: uuid.UUID) -> None:
        """The member's vector is being deleted: it stops counting here at once (facemodel
        is told with the branch galleries)."""
        self.members.discard(member_id)
        self._metrics.chain_size.set(len(self.members))
        if self._changes is not None:
            self._changes[member_id] = None

    async def matches(self, probe: Vector, *, space: str) -> list[tuple[str, float]]:
        return await self._engine.search(CHAIN_GALLERY, space, probe, k=CHAIN_CANDIDATES)

    async def reconcile(self, *, space: str) -> None:
        """The gallery holds exactly the store: what it kept across an erasure goes, what it
        missed (an enrolment while facemodel was away) comes. facemodel is asked first: a
        member enrolled or erased between the two reads is then put or removed as the store
        says."""
        subjects = await self._engine.subjects(CHAIN_GALLERY)
        held = await self._store.held_subjects()
        for subject in subjects - held:
            await self._engine.remove(CHAIN_GALLERY, subject)
        unheard_of = (uuid.UUID(subject) for subject in held - subjects)
        missing = {member_id for member_id in unheard_of if not self._is_erasing(member_id)}
        found = await self._store.vectors(missing, space=space)
        for start in range(0, len(found), LOAD_CHUNK):
            await self._engine.put_vectors(
                CHAIN_GALLERY,
                space,
                {str(member_id): vector for member_id, vector in found[start : start + LOAD_CHUNK]},
            )
        self.members -= {uuid.UUID(subject) for subject in subjects - held}
        self.members |= {member_id for member_id, _ in found}
        self._metrics.chain_size.set(len(self.members))
        if subjects - held or found:
            log.warning("chain gallery reconciled: %d removed, %d added", len(subjects - held), len(found))
