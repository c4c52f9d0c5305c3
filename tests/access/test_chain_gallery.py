"""The chain gallery: a face outside the branch gallery is found in facemodel's copy of the
whole store, not by reading and decrypting the store; an erased face never matches there;
while the copy is being filled (start-up, a facemodel restart) a miss scans the store."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import numpy as np
from numpy.typing import NDArray

from access.chain_gallery import CHAIN_GALLERY
from access.face_engine import FaceEngine
from access.faces import FaceCache
from contracts import FaceErased
from tests.access.conftest import BRANCH, Door, membership
from tests.support.waiting import eventually


class HeldChainLoad:
    """The real facemodel client, except that vectors bound for the chain gallery wait
    until ``release`` is set: the loader is caught half-way, as on a slow start-up."""

    def __init__(self, engine: FaceEngine) -> None:
        self._engine = engine
        self.release = asyncio.Event()
        self.waiting = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    async def put_vectors(self, gallery: str, space: str, vectors: dict[str, NDArray[np.float32]]) -> None:
        if gallery == CHAIN_GALLERY:
            self.waiting += 1
            await self.release.wait()
        await self._engine.put_vectors(gallery, space, vectors)


def cache(door: Door) -> FaceCache:
    faces: FaceCache = door.service.faces
    return faces


async def chain_member(door: Door, face_service, photo_bytes, photo: str) -> uuid.UUID:
    """A member of every branch (no home branch): not in the branch gallery."""
    member = uuid.uuid4()
    analysis = await face_service.analyse(photo_bytes[photo])
    await door.announce(
        membership(member, branch_id=None), door.enrolment(member, analysis.embedding, model=analysis.model)
    )
    assert member not in cache(door).hot[BRANCH]
    return member


async def decide(door: Door, photo: bytes) -> dict[str, Any]:
    response = await door.face(photo)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def misses(door: Door) -> dict[str, float]:
    text = (await door.client.get("/metrics")).text
    found = {}
    for via in ("chain", "scan"):
        line = f'access_face_miss_lookups_total{{via="{via}"}} '
        found[via] = next((float(row.split()[-1]) for row in text.splitlines() if row.startswith(line)), 0.0)
    return found


async def test_a_member_outside_the_branch_gallery_is_found_without_reading_the_store(
    open_door, postgres, face_service, photo_bytes
):
    database = {"access": postgres.create("access")}
    async with open_door(database_urls=database) as door:
        member = await chain_member(door, face_service, photo_bytes, "obama.jpg")
    # A new start with facemodel's memory empty: the chain gallery is filled from the store.
    face_service.galleries.clear()
    async with open_door(database_urls=database) as door:
        faces = cache(door)
        await eventually(lambda: faces.chain_ready, timeout=10)
        assert face_service.galleries[CHAIN_GALLERY].subjects() == [str(member)]
        assert member not in faces.hot[BRANCH]
        decision = await decide(door, photo_bytes["obama2.jpg"])
        assert (decision["granted"], decision["member_id"], decision["cache"]) == (True, str(member), "miss")
        assert "chain_search" in decision["timings_ms"]
        assert "cold_search" not in decision["timings_ms"]  # the store was not scanned
        assert await misses(door) == {"chain": 1.0, "scan": 0.0}
        assert member in faces.hot[BRANCH]  # promoted: the next visit is a hit
        await door.face(photo_bytes["obama2.jpg"], gate="front-out")
        again = await decide(door, photo_bytes["obama3.jpg"])
        assert (again["granted"], again["cache"]) == (True, "hit")


async def test_a_restarted_facemodel_gets_the_chain_gallery_back_and_misses_scan_meanwhile(
    open_door, postgres, face_service, photo_bytes
):
    async with open_door(database_urls={"access": postgres.create("access")}) as door:
        faces = cache(door)
        obama = await chain_member(door, face_service, photo_bytes, "obama.jpg")
        biden = await chain_member(door, face_service, photo_bytes, "biden.jpg")
        await eventually(lambda: faces.chain_ready and faces.chain == {obama, biden}, timeout=10)
        held = HeldChainLoad(faces._engine)
        faces._engine = faces._chain._engine = held  # the chain gallery calls facemodel too

        face_service.galleries.clear()  # the sidecar restarted with empty memory
        await faces.ensure_loaded()  # the keeper notices and starts filling it again
        assert not faces.chain_ready
        await eventually(lambda: held.waiting == 1, timeout=5)

        # Half-way through the reload a miss still gets its answer, from the store.
        decision = await decide(door, photo_bytes["obama2.jpg"])
        assert (decision["granted"], decision["member_id"], decision["cache"]) == (True, str(obama), "miss")
        assert "cold_search" in decision["timings_ms"]
        assert "chain_search" not in decision["timings_ms"]

        held.release.set()
        await eventually(lambda: faces.chain_ready, timeout=10)
        assert sorted(face_service.galleries[CHAIN_GALLERY].subjects()) == sorted([str(obama), str(biden)])
        decision = await decide(door, photo_bytes["biden.jpg"])
        assert (decision["granted"], decision["member_id"], decision["cache"]) == (True, str(biden), "miss")
        assert "chain_search" in decision["timings_ms"]
        assert await misses(door) == {"chain": 1.0, "scan": 1.0}


async def test_a_lost_chain_gallery_is_noticed_at_the_door(open_door, postgres, face_service, photo_bytes):
    async with open_door(database_urls={"access": postgres.create("access")}) as door:
        faces = cache(door)
        member = await chain_member(door, face_service, photo_bytes, "obama.jpg")
        await eventually(lambda: faces.chain_ready, timeout=10)
        del face_service.galleries[CHAIN_GALLERY]  # before the keeper's next look
        decision = await decide(door, photo_bytes["obama2.jpg"])
        assert (decision["granted"], decision["member_id"]) == (True, str(member))
        assert "cold_search" in decision["timings_ms"]
        await eventually(lambda: faces.chain_ready, timeout=10)  # reloaded in the background
        assert face_service.galleries[CHAIN_GALLERY].subjects() == [str(member)]


async def test_an_erased_member_is_not_recognised_on_the_miss_path(open_door, postgres, face_service, photo_bytes):
    async with open_door(database_urls={"access": postgres.create("access")}) as door:
        faces = cache(door)
        erased = await chain_member(door, face_service, photo_bytes, "obama.jpg")
        kept = await chain_member(door, face_service, photo_bytes, "biden.jpg")
        await eventually(lambda: faces.chain_ready and faces.chain == {erased, kept}, timeout=10)
        vector = (await face_service.analyse(photo_bytes["obama.jpg"])).embedding
        assert vector is not None

        # Erased while the chain gallery is being filled again: the loader's page, read
        # before the erasure, does not bring the face back.
        held = HeldChainLoad(faces._engine)
        faces._engine = faces._chain._engine = held  # the chain gallery calls facemodel too
        face_service.galleries.clear()
        await faces.ensure_loaded()
        await eventually(lambda: held.waiting == 1, timeout=5)
        await door.announce(FaceErased(member_id=erased, reason="consent_withdrawn"))
        held.release.set()
        await eventually(lambda: faces.chain_ready, timeout=10)
        assert face_service.galleries[CHAIN_GALLERY].subjects() == [str(kept)]
        decision = await decide(door, photo_bytes["obama2.jpg"])
        assert (decision["granted"], decision["reason"]) == (False, "face_not_recognised")
        assert "chain_search" in decision["timings_ms"]

        # facemodel still holding the erased vector (it missed the erasure): no match.
        face_service.put_vector(CHAIN_GALLERY, str(erased), vector)
        decision = await decide(door, photo_bytes["obama3.jpg"])
        assert (decision["granted"], decision["reason"]) == (False, "face_not_recognised")
        await eventually(lambda: str(erased) not in face_service.galleries[CHAIN_GALLERY], timeout=5)
        assert erased not in faces.hot[BRANCH]
        assert (await decide(door, photo_bytes["biden.jpg"]))["granted"] is True
