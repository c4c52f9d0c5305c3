"""Erasure always wins: a face erased while facemodel is away stays erased across restarts
of both, and a late or replayed enrolment older than the erasure is refused."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import select

from access.app import create_app
from access.models import FaceTombstone, FaceVector
from common.crypto import SealingKeys, VectorSealer
from common.migrations import upgrade
from common.settings import PlatformSettings
from contracts import FACE_TRANSIT_PURPOSE, FaceErased
from facemodel.app import create_app as create_facemodel_app
from tests.access.conftest import Door, membership, site_settings
from tests.support import tokens
from tests.support.apps import asgi_client, serving
from tests.support.waiting import eventually


@asynccontextmanager
async def facemodel_up(face_service, socket_path) -> AsyncIterator[None]:
    """facemodel's socket served; leaving the block takes it away (its memory stays, as
    with a sidecar that was unreachable or hung rather than restarted)."""
    app = create_facemodel_app(PlatformSettings(environment="test"), faces=face_service, trusted_transport=True)
    async with serving(app, uds=str(socket_path)):
        yield


@asynccontextmanager
async def access_site(settings, device) -> AsyncIterator[Door]:
    app = create_app(settings, keys=tokens.key_cache())
    async with asgi_client(app) as client:
        yield Door(app, client, device, settings)


async def rows(door: Door, model: type) -> list:
    async with door.app.state.kernel.db.sessions() as session:
        return list((await session.scalars(select(model))).all())


async def test_an_erasure_facemodel_missed_still_wins_after_restarts_and_replays(
    tmp_path, relay, face_service, photo_bytes
):
    face_service.galleries.clear()
    socket_path = tmp_path / "facemodel.sock"
    settings = site_settings(tmp_path, relay[0].ours, socket_path, breaker_reset_timeout_s=0.5)
    upgrade("access", settings.database_url("access"))
    member = uuid.uuid4()
    analysis = await face_service.analyse(photo_bytes["obama.jpg"])
    assert face_service.holder.reference_face is not None  # the enrolment photo's aligned crop

    async with facemodel_up(face_service, socket_path), access_site(settings, relay[1]) as door:
        old_enrolment = door.enrolment(member, analysis.embedding, model=analysis.model)
        await door.announce(membership(member), old_enrolment)
        entered = await decide(door, photo_bytes["obama2.jpg"])
        assert entered.get("granted") is True, entered
        await door.face(photo_bytes["obama2.jpg"], gate="front-out")

    gallery = "access-gangnam"
    assert str(member) in face_service.galleries[gallery]  # facemodel still holds it
    async with access_site(settings, relay[1]) as door:  # facemodel is away now
        await door.announce(FaceErased(member_id=member, reason="consent_withdrawn"))
        # Erased here at once, whatever facemodel's state: no vector, a tombstone.
        await eventually(lambda: _erased_locally(door, member), timeout=5)
        assert await rows(door, FaceVector) == []

    # Everything restarts; facemodel comes back still holding the vector it was never
    # told to drop. The reconciler takes it out, and a match on it never counts.
    async with facemodel_up(face_service, socket_path), access_site(settings, relay[1]) as door:
        decision = await decide(door, photo_bytes["obama3.jpg"])
        assert (decision["granted"], decision["reason"]) == (False, "face_not_recognised")
        await eventually(lambda: str(member) not in face_service.galleries.get(gallery, ()), timeout=5)
        assert face_service.holder.reference_face is None  # the last aligned crop went too
        [tombstone] = await rows(door, FaceTombstone)
        assert tombstone.galleries_cleared is True

        # The old enrolment again (a redelivery, a replay, a republish from a stale copy).
        await door.announce(old_enrolment.model_copy(update={"event_id": uuid.uuid4()}))
        decision = await decide(door, photo_bytes["obama2.jpg"])
        assert (decision["granted"], decision["reason"]) == (False, "face_not_recognised")
        assert await rows(door, FaceVector) == []

        # A new enrolment, after the erasure, is a new consent: it counts.
        await door.announce(door.enrolment(member, analysis.embedding, model=analysis.model))
        await eventually(lambda: _enrolled(door, member), timeout=5)
        entered = await decide(door, photo_bytes["obama2.jpg"])
        assert entered.get("granted") is True, entered


async def decide(door: Door, photo: bytes) -> dict:
    response = await door.face(photo)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _erased_locally(door: Door, member: uuid.UUID) -> bool:
    return [row.member_id for row in await rows(door, FaceTombstone)] == [member]


async def _enrolled(door: Door, member: uuid.UUID) -> bool:
    return [row.member_id for row in await rows(door, FaceVector)] == [member]


async def test_an_enrolment_sealed_under_a_key_this_site_lacks_is_parked_not_lost(open_door, face_service, photo_bytes):
    async with open_door(bus_retry_delays_ms=(10,), bus_max_attempts=2) as door:
        member = uuid.uuid4()
        analysis = await face_service.analyse(photo_bytes["obama.jpg"])
        rotated = SealingKeys.of({"2": "k" * 8 + "0123456789abcdefghijklmnopqrstuv"}, "2")
        sealed = VectorSealer(rotated, purpose=FACE_TRANSIT_PURPOSE).seal(member, analysis.embedding)
        event = door.enrolment(member, analysis.embedding, model=analysis.model).model_copy(
            update={"sealed_embedding": base64.b64encode(sealed).decode(), "key_id": "2"}
        )
        await door.announce(membership(member), event)
        await eventually(lambda: len(door.bus.parked) == 1, timeout=5)
        [parked] = door.bus.parked
        assert "does not open with key 2" in parked.reason
        assert await rows(door, FaceVector) == []
