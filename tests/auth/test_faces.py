"""Face enrolment with consent and erasure, against the real facemodel on loopback."""

from __future__ import annotations

import base64
import sqlite3

import cv2
import httpx
import numpy as np
import pytest

from auth.app import create_app as create_auth
from auth.settings import AuthSettings
from common.crypto import InvalidTag, SealingKeys, VectorSealer
from contracts import FACE_TRANSIT_PURPOSE, FaceEnrolled, FaceErased, MembershipChanged
from facemodel.app import create_app as create_facemodel
from facemodel.settings import FacemodelSettings
from tests.auth.helpers import PASSWORD, bearer, grant_membership, operator_tokens, outbox_events, signup_and_login
from tests.support.apps import FAST_HASHER, asgi_client, free_port, serving
from tests.support.events import recording_bus
from tests.support.waiting import eventually

CONSENT = {"text_version": "2026-11", "accepted": True}


@pytest.fixture
async def published():
    async with recording_bus(FaceEnrolled, FaceErased) as recording:
        yield recording


def transit_sealer() -> VectorSealer:
    return VectorSealer(AuthSettings(environment="test").sealing_keys(), purpose=FACE_TRANSIT_PURPOSE)


def announced(published) -> list[FaceEnrolled]:
    return [event for event in published.recorded if isinstance(event, FaceEnrolled)]


def erasures(published) -> list[dict]:
    return [
        event.model_dump(include={"member_id", "reason"}, mode="json")
        for event in published.recorded
        if isinstance(event, FaceErased)
    ]


def opened(event: FaceEnrolled) -> np.ndarray:
    return transit_sealer().open(event.member_id, base64.b64decode(event.sealed_embedding))


@pytest.fixture
async def stack(settings, pack, published):
    auth_port, face_port = free_port(), free_port()
    auth_settings = AuthSettings(
        **{
            **settings.model_dump(),
            "facemodel_url": f"http://127.0.0.1:{face_port}",
            "auth_url": f"http://127.0.0.1:{auth_port}",
        }
    )
    auth_app = create_auth(auth_settings, hasher=FAST_HASHER, bus=published.bus)
    face_settings = FacemodelSettings(environment="test", facemodel_pack=pack, auth_url=f"http://127.0.0.1:{auth_port}")
    async with (
        serving(auth_app, auth_port) as auth_url,
        serving(create_facemodel(face_settings), face_port),
        httpx.AsyncClient(base_url=auth_url, timeout=30) as client,
    ):
        yield auth_app, client


def jpeg(data: bytes) -> dict:
    return {"content": data, "headers": {"content-type": "image/jpeg"}}


async def enrol(client, tokens, data):
    return await client.post("/me/face", content=data, headers={**bearer(tokens), "content-type": "image/jpeg"})


def database_bytes(settings) -> bytes:
    path = settings.database_url("auth").removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(FULL)")
    return open(path, "rb").read()


async def test_consent_is_required_and_must_be_the_current_text(stack, photo_bytes):
    _, client = stack
    _, member = await signup_and_login(client)
    refused = await enrol(client, member, photo_bytes["obama.jpg"])
    assert refused.status_code == 403
    assert "consent" in refused.json()["detail"]
    old_text = await client.post(
        "/me/face/consent", json={"text_version": "2020-01", "accepted": True}, headers=bearer(member)
    )
    assert old_text.status_code == 409
    not_accepted = await client.post(
        "/me/face/consent", json={"text_version": "2026-11", "accepted": False}, headers=bearer(member)
    )
    assert not_accepted.status_code == 422


async def test_enrolment_stores_only_the_sealed_vector_and_publishes_it(stack, settings, photo_bytes, published):
    app, client = stack
    member_id, member = await signup_and_login(client)
    assert (await client.post("/me/face/consent", json=CONSENT, headers=bearer(member))).status_code == 201
    enrolled = await enrol(client, member, photo_bytes["obama.jpg"])
    assert enrolled.status_code == 201, enrolled.text
    assert enrolled.json() == {"model": "yunet-sface@1.0.0", "embedding_space": "sface-2021dec"}
    await eventually(lambda: len(announced(published)) == 1, timeout=5)
    [event] = announced(published)
    assert str(event.member_id) == member_id
    # In transit the vector is sealed under a named key; only a holder of the key opens it.
    wire = event.to_wire()
    assert b'"embedding"' not in wire
    assert event.key_id == "1"
    stored = await app.state.faces.stored_vector(__import__("uuid").UUID(member_id))
    assert np.allclose(stored, opened(event), atol=1e-6)
    other_key = VectorSealer(SealingKeys.of({"1": "x" * 40}, "1"), purpose=FACE_TRANSIT_PURPOSE)
    with pytest.raises(InvalidTag):
        other_key.open(event.member_id, base64.b64decode(event.sealed_embedding))
    # Once published, the outbox keeps no copy of an event carrying biometrics.
    await eventually(lambda: outbox_events(settings, FaceEnrolled.routing_key()) == [], timeout=5)
    contents = database_bytes(settings)
    photo = photo_bytes["obama.jpg"]
    for offset in range(0, len(photo) - 64, len(photo) // 16):  # no piece of the photo anywhere
        assert photo[offset : offset + 64] not in contents
    assert np.asarray(stored, np.float32).tobytes() not in contents  # the vector only sealed

    again = await enrol(client, member, photo_bytes["obama2.jpg"])  # re-enrolment replaces
    assert again.status_code == 201
    await eventually(lambda: len(announced(published)) == 2, timeout=5)
    first, second = announced(published)
    assert second.enrolment_version > first.enrolment_version
    replaced = await app.state.faces.stored_vector(__import__("uuid").UUID(member_id))
    assert np.allclose(replaced, opened(second), atol=1e-6)


async def test_operators_republish_memberships_and_faces_for_a_new_access_site(stack, settings, photo_bytes, published):
    app, client = stack
    operator = await operator_tokens(app, client)
    member_id, member = await signup_and_login(client)
    await grant_membership(client, operator, member_id)
    await client.post("/me/face/consent", json=CONSENT, headers=bearer(member))
    assert (await enrol(client, member, photo_bytes["obama.jpg"])).status_code == 201
    for what in ("memberships", "faces"):
        response = await client.post("/admin/republish", json={"what": what}, headers=bearer(operator))
        assert response.json() == {"published": 1}
    memberships = outbox_events(settings, "MembershipChanged.v1")
    assert [event["data"]["version"] for event in memberships] == [1, 1]  # the same version, again
    await eventually(lambda: len(announced(published)) == 2, timeout=5)
    first, again = announced(published)
    assert np.allclose(opened(first), opened(again), atol=1e-6)
    assert first.enrolment_version == again.enrolment_version  # the same enrolment, again
    refused = await client.post("/admin/republish", json={"what": "faces"}, headers=bearer(member))
    assert refused.status_code == 403


async def test_unusable_photos_get_a_reason(stack, photo_bytes):
    _, client = stack
    _, member = await signup_and_login(client)
    await client.post("/me/face/consent", json=CONSENT, headers=bearer(member))
    blank = cv2.imencode(".jpg", np.full((480, 640, 3), 180, np.uint8))[1].tobytes()
    cases = [
        (blank, "image/jpeg", 422, "no face found"),
        (photo_bytes["obama_partial_face.jpg"], "image/jpeg", 422, "cut off at the edge of the photo"),
        (b"%PDF-1.7 this is a document", "image/jpeg", 422, "not a JPEG or PNG"),
        (photo_bytes["obama.jpg"], "application/pdf", 415, "image/jpeg or image/png"),
        (b"\xff\xd8" + b"0" * (6 * 1024 * 1024), "image/jpeg", 413, ""),
        (b"", "image/jpeg", 422, "empty"),
    ]
    for content, content_type, status, reason in cases:
        response = await client.post(
            "/me/face", content=content, headers={**bearer(member), "content-type": content_type}
        )
        assert response.status_code == status, (reason, response.text)
        assert reason in str(response.json()["detail"])


async def test_withdrawing_consent_erases_the_vector_once(stack, settings, photo_bytes, published):
    app, client = stack
    member_id, member = await signup_and_login(client)
    await client.post("/me/face/consent", json=CONSENT, headers=bearer(member))
    await enrol(client, member, photo_bytes["obama.jpg"])
    assert (await client.delete("/me/face/consent", headers=bearer(member))).status_code == 204
    assert (await client.delete("/me/face/consent", headers=bearer(member))).status_code == 204
    await eventually(lambda: len(erasures(published)) >= 1, timeout=5)
    assert erasures(published) == [{"member_id": member_id, "reason": "consent_withdrawn"}]
    [erased] = [event for event in published.recorded if isinstance(event, FaceErased)]
    assert erased.enrolment_version == announced(published)[0].enrolment_version
    assert await app.state.faces.stored_vector(__import__("uuid").UUID(member_id)) is None
    assert (await enrol(client, member, photo_bytes["obama.jpg"])).status_code == 403  # consent is gone


async def test_member_erases_the_face_on_request(stack, settings, photo_bytes, published):
    _, client = stack
    member_id, member = await signup_and_login(client)
    # The member's screen learns which consent text to show, and what it holds of them.
    before = (await client.get("/me/face", headers=bearer(member))).json()
    assert before == {"consent_version": "2026-11", "consent_given_at": None, "enrolled_at": None}
    await client.post("/me/face/consent", json=CONSENT, headers=bearer(member))
    await enrol(client, member, photo_bytes["obama.jpg"])
    enrolled = (await client.get("/me/face", headers=bearer(member))).json()
    assert enrolled["consent_given_at"], enrolled
    assert enrolled["enrolled_at"], enrolled
    assert (await client.delete("/me/face", headers=bearer(member))).status_code == 204
    await eventually(lambda: len(erasures(published)) >= 1, timeout=5)
    assert erasures(published) == [{"member_id": member_id, "reason": "member_request"}]
    after = (await client.get("/me/face", headers=bearer(member))).json()
    assert after["enrolled_at"] is None, after
    assert after["consent_given_at"], after  # erasing keeps the consent


async def test_deleting_the_account_erases_face_sessions_and_memberships(stack, settings, photo_bytes, published):
    app, client = stack
    operator = await operator_tokens(app, client)
    email = "leaving@example.com"
    member_id, member = await signup_and_login(client, email=email)
    await grant_membership(client, operator, member_id)
    await client.post("/me/face/consent", json=CONSENT, headers=bearer(member))
    await enrol(client, member, photo_bytes["obama.jpg"])
    wrong = await client.request("DELETE", "/me", json={"password": "not my password"}, headers=bearer(member))
    assert wrong.status_code == 403
    gone = await client.request("DELETE", "/me", json={"password": PASSWORD}, headers=bearer(member))
    assert gone.status_code == 204
    await eventually(lambda: len(erasures(published)) >= 1, timeout=5)
    assert erasures(published) == [{"member_id": member_id, "reason": "account_deleted"}]
    memberships = [event["data"] for event in outbox_events(settings, MembershipChanged.routing_key())]
    assert (memberships[-1]["status"], memberships[-1]["version"]) == ("expired", 2)
    assert (await client.post("/login", json={"email": email, "password": PASSWORD})).status_code == 401
    assert (await client.post("/token/refresh", json={"refresh_token": member["refresh_token"]})).status_code == 401


async def test_facemodel_down_is_503(settings, photo_bytes):
    auth_settings = AuthSettings(**{**settings.model_dump(), "facemodel_url": f"http://127.0.0.1:{free_port()}"})
    async with asgi_client(create_auth(auth_settings, hasher=FAST_HASHER)) as client:
        _, member = await signup_and_login(client)
        await client.post("/me/face/consent", json=CONSENT, headers=bearer(member))
        response = await enrol(client, member, photo_bytes["obama.jpg"])
        assert response.status_code == 503


async def test_sign_up_and_log_in_with_a_phone_number(client):
    created = await client.post("/signup", json={"phone": "+821012345678", "password": PASSWORD})
    assert created.status_code == 201
    assert created.json()["phone"] == "+821012345678"
    assert created.json()["email"] is None
    assert (await client.post("/login", json={"phone": "+821012345678", "password": PASSWORD})).status_code == 200
    both = await client.post("/signup", json={"phone": "+821012345679", "email": "x@example.com", "password": PASSWORD})
    assert both.status_code == 422
    duplicate = await client.post("/signup", json={"phone": "+821012345678", "password": PASSWORD})
    assert duplicate.status_code == 409


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("010-1234-5670", "+821012345670"),
        ("010 1234 5670", "+821012345670"),
        ("+82 10-1234-5670", "+821012345670"),
        ("+82 (0)10 1234 5670", "+821012345670"),
        ("+82 010 1234 5670", "+821012345670"),
        ("02-123-4567", "+8221234567"),
        ("+1 (415) 555-0100", "+14155550100"),
    ],
)
async def test_a_phone_number_as_people_write_it_is_one_account_in_e164(client, written, stored):
    created = await client.post("/signup", json={"phone": written, "password": PASSWORD})
    assert created.status_code == 201, created.text
    assert created.json()["phone"] == stored
    # The same number, written the other way, signs in to it and cannot sign up again.
    assert (await client.post("/login", json={"phone": stored, "password": PASSWORD})).status_code == 200
    assert (await client.post("/signup", json={"phone": stored, "password": PASSWORD})).status_code == 409


@pytest.mark.parametrize(
    "written", ["010-12", "12345678", "00821012345678", "+82 10 abcd 5678", "tel:01012345678", "9" * 40]
)
async def test_a_phone_number_that_cannot_be_read_is_refused_with_the_reason(client, written):
    refused = await client.post("/signup", json={"phone": written, "password": PASSWORD})
    assert refused.status_code == 422, refused.text
    assert "phone" in str(refused.json()["detail"])
