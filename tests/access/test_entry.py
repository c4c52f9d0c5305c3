"""Entries end to end: real photos through a real facemodel over its Unix socket, entry
passes signed like auth signs them, and a relay board on a real (pty) serial line."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

from PIL import Image
from sqlalchemy import select

from access.models import AuditEntry
from common.security import Role, TokenIssuer
from contracts import FaceErased
from tests.access.conftest import BRANCH, entry_pass, membership
from tests.support import tokens
from tests.support.waiting import eventually


def blank_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (120, 130, 140)).save(buffer, format="JPEG")
    return buffer.getvalue()


async def test_enrolled_member_enters_and_the_relay_pulses(door, face_service, photo_bytes):
    member = await door.enrol(face_service, photo_bytes, "obama.jpg")
    response = await door.face(photo_bytes["obama2.jpg"])
    assert response.status_code == 200, response.text
    decision = response.json()
    assert decision["granted"] is True
    assert decision["reason"] == "granted"
    assert decision["member_id"] == str(member)
    assert decision["gate_result"] == "opened"
    assert decision["cache"] == "hit"
    assert decision["model"].startswith("yunet-sface")
    assert {"detect", "embed", "facemodel_call"} <= decision["timings_ms"].keys()
    # The line opened with the relay switched off (a drop mid-pulse must not leave it on),
    # then exactly one pulse: on, and off after the open time.
    await eventually(lambda: [f.on for f in door.device.frames if f.channel == 1] == [False, True, False], timeout=3)
    on, off = [f for f in door.device.frames if f.channel == 1][-2:]
    assert 0.15 <= off.at - on.at <= 0.5
    assert door.device.bad_bytes == 0


async def test_somebody_else_is_refused_with_a_reason_and_nothing_opens(door, face_service, photo_bytes):
    await door.enrol(face_service, photo_bytes, "obama.jpg")
    decision = (await door.face(photo_bytes["biden.jpg"])).json()
    assert decision["granted"] is False
    assert decision["reason"] == "face_not_recognised"
    assert decision["member_id"] is None
    assert decision["gate_result"] == "not_commanded"
    assert door.device.on_frames(1) == []


async def test_an_erased_face_stops_matching_within_seconds(door, face_service, photo_bytes):
    member = await door.enrol(face_service, photo_bytes, "obama.jpg")
    assert (await door.face(photo_bytes["obama2.jpg"])).json()["granted"] is True
    await door.announce(FaceErased(member_id=member, reason="consent_withdrawn"))
    # The exit first, so anti-passback is not what refuses the second attempt.
    await door.face(photo_bytes["obama3.jpg"], gate="front-out")
    decision = (await door.face(photo_bytes["obama3.jpg"])).json()
    assert decision["granted"] is False
    assert decision["reason"] == "face_not_recognised"


async def test_a_frame_without_a_face_says_so(door):
    decision = (await door.face(blank_jpeg())).json()
    assert (decision["granted"], decision["reason"], decision["detail"]) == (False, "no_face", "no_face")


async def test_bad_frames_and_bad_credentials_are_refused_cleanly(door, photo_bytes):
    gate = "/v1/gates/front-in/face"
    assert (await door.face(b"\xff\xd8 not really a jpeg")).status_code == 422
    assert (await door.face(photo_bytes["obama.jpg"], content_type="text/plain")).status_code == 415
    assert (await door.face(b"")).status_code == 422
    oversized = b"\xff\xd8" + b"\0" * (door.settings.max_body_bytes + 10)
    assert (await door.face(oversized)).status_code == 413
    jpeg = {"content-type": "image/jpeg"}
    assert (await door.client.post(gate, content=photo_bytes["obama.jpg"], headers=jpeg)).status_code == 401
    forged = tokens.issuer(tokens.other_key()).issue("device:x", [Role.DEVICE], [BRANCH])
    headers = {**jpeg, "authorization": f"Bearer {forged}"}
    assert (await door.client.post(gate, content=photo_bytes["obama.jpg"], headers=headers)).status_code == 401
    elsewhere = tokens.issuer().issue("device:y", [Role.DEVICE], ["jamsil"])
    headers = {**jpeg, "authorization": f"Bearer {elsewhere}"}
    assert (await door.client.post(gate, content=photo_bytes["obama.jpg"], headers=headers)).status_code == 403
    member = tokens.issuer().issue(str(uuid.uuid4()), [Role.CUSTOMER], [BRANCH])
    headers = {**jpeg, "authorization": f"Bearer {member}"}
    assert (await door.client.post(gate, content=photo_bytes["obama.jpg"], headers=headers)).status_code == 403
    unknown_gate = await door.client.post("/v1/gates/nowhere/face", content=b"x", headers={**jpeg, **door.kiosk()})
    assert unknown_gate.status_code == 404
    assert door.device.on_frames(1) == []


async def test_entry_passes_each_refused_with_their_reason(door):
    member = uuid.uuid4()
    await door.announce(membership(member))
    valid = entry_pass(member)
    assert (await door.scan(valid)).json()["reason"] == "granted"
    assert (await door.scan(valid)).json()["reason"] == "pass_replayed"
    await door.client.post("/v1/gates/front-out/pass", json={"code": entry_pass(member)}, headers=door.kiosk())
    stale = entry_pass(member, now=datetime.now(UTC) - timedelta(minutes=2))
    assert (await door.scan(stale)).json()["reason"] == "pass_expired"
    forged = TokenIssuer(
        tokens.other_key(), issuer=tokens.ISSUER, audience="smartgym-entry", ttl=timedelta(seconds=60)
    ).issue(str(member), [Role.CUSTOMER], [BRANCH])
    assert (await door.scan(forged)).json()["reason"] == "pass_invalid"
    assert (await door.scan(entry_pass(member, "jamsil"))).json()["reason"] == "pass_wrong_branch"
    assert (await door.scan(entry_pass(member, ttl_s=3600))).json()["reason"] == "pass_invalid"
    access_token = tokens.issuer().issue(str(member), [Role.CUSTOMER], [BRANCH])
    assert (await door.scan(access_token)).json()["reason"] == "pass_invalid"
    assert (await door.scan("x" * 30)).json()["reason"] == "pass_invalid"
    assert (await door.scan(entry_pass(uuid.uuid4()))).json()["reason"] == "no_membership"
    await eventually(lambda: len(door.device.on_frames(1)) == 1, timeout=3)
    too_long = await door.client.post("/v1/gates/front-in/pass", json={"code": "x" * 5000}, headers=door.kiosk())
    assert too_long.status_code == 422


async def test_anti_passback_and_an_audited_override(door):
    member = uuid.uuid4()
    await door.announce(membership(member))
    assert (await door.scan(entry_pass(member))).json()["granted"] is True
    second = (await door.scan(entry_pass(member))).json()
    assert (second["granted"], second["reason"]) == (False, "already_inside")
    operator = tokens.issuer().issue("operator-1", [Role.OPERATOR])
    reset = await door.client.post(
        f"/v1/branches/{BRANCH}/members/{member}/passback-reset",
        json={"reason": "left through the fire door"},
        headers={"authorization": f"Bearer {operator}"},
    )
    assert reset.json() == {"was_inside": True}
    assert (await door.scan(entry_pass(member))).json()["granted"] is True
    exit_ = (await door.scan(entry_pass(member), gate="front-out")).json()
    assert (exit_["granted"], exit_["gate_result"]) == (True, "opened")
    assert (await door.scan(entry_pass(member))).json()["granted"] is True
    async with door.app.state.kernel.db.sessions() as session:
        entries = (await session.scalars(select(AuditEntry))).all()
    assert [(entry.action, entry.actor, entry.detail["reason"]) for entry in entries] == [
        ("passback_reset", "operator-1", "left through the fire door")
    ]
    customer = tokens.issuer().issue(str(member), [Role.CUSTOMER], [BRANCH])
    refused = await door.client.post(
        f"/v1/branches/{BRANCH}/members/{member}/passback-reset",
        json={"reason": "let me in"},
        headers={"authorization": f"Bearer {customer}"},
    )
    assert refused.status_code == 403


async def test_membership_rules_blocked_hours_and_lapsed(door):
    blocked, night_owl, lapsed, paused = (uuid.uuid4() for _ in range(4))
    now = datetime.now(UTC)
    # A window that excludes the current hour in Seoul, whatever the time the test runs.
    seoul_hour = (now + timedelta(hours=9)).hour
    window = f"{(seoul_hour + 2) % 24:02d}:00-{(seoul_hour + 4) % 24:02d}:00"
    await door.announce(
        membership(blocked),
        membership(blocked, version=2, status="blocked"),
        membership(night_owl, access_hours=window),
        membership(lapsed, valid_until=now - timedelta(hours=1)),
        membership(paused, status="paused"),
    )
    # A late copy of version 1 must not unblock.
    await door.announce(membership(blocked, version=1))
    reasons = {
        member: (await door.scan(entry_pass(member))).json()["reason"]
        for member in (blocked, night_owl, lapsed, paused)
    }
    assert reasons == {
        blocked: "membership_blocked",
        night_owl: "outside_access_hours",
        lapsed: "membership_expired",
        paused: "membership_paused",
    }
    assert door.device.on_frames(1) == []


async def test_occupancy_limit(open_door):
    async with open_door(access_branches={BRANCH: {"occupancy_limit": 1}}) as door:
        first, second = uuid.uuid4(), uuid.uuid4()
        await door.announce(membership(first), membership(second))
        assert (await door.scan(entry_pass(first))).json()["granted"] is True
        assert (await door.scan(entry_pass(second))).json()["reason"] == "branch_full"
        await door.scan(entry_pass(first), gate="front-out")
        assert (await door.scan(entry_pass(second))).json()["granted"] is True
        owner = tokens.issuer().issue("owner-1", [Role.BRANCH_OWNER], [BRANCH])
        occupancy = await door.client.get(
            f"/v1/branches/{BRANCH}/occupancy", headers={"authorization": f"Bearer {owner}"}
        )
        assert occupancy.json() == {"branch_id": BRANCH, "inside": 1, "limit": 1}


async def test_access_log_filters_pages_and_scopes(door):
    member = uuid.uuid4()
    await door.announce(membership(member))
    await door.scan(entry_pass(member))
    await door.scan(entry_pass(member))
    await door.scan(entry_pass(uuid.uuid4()))
    operator = {"authorization": f"Bearer {tokens.issuer().issue('op', [Role.OPERATOR])}"}
    page = (await door.client.get("/v1/access-log?limit=2", headers=operator)).json()
    assert [item["reason"] for item in page["items"]] == ["no_membership", "already_inside"]
    older = (
        await door.client.get(f"/v1/access-log?limit=2&before_id={page['next_before_id']}", headers=operator)
    ).json()
    assert [item["reason"] for item in older["items"]] == ["granted"]
    assert older["next_before_id"] is None
    mine = (await door.client.get(f"/v1/access-log?member_id={member}&outcome=denied", headers=operator)).json()
    assert [item["reason"] for item in mine["items"]] == ["already_inside"]
    owner = {"authorization": f"Bearer {tokens.issuer().issue('o', [Role.BRANCH_OWNER], ['jamsil'])}"}
    assert (await door.client.get(f"/v1/access-log?branch_id={BRANCH}", headers=owner)).status_code == 403
    assert (await door.client.get("/v1/access-log", headers=owner)).json()["items"] == []
    assert (await door.client.get("/v1/access-log?since=2026-01-01T00:00:00", headers=operator)).status_code == 422
    kiosk = door.kiosk()
    assert (await door.client.get("/v1/access-log", headers=kiosk)).status_code == 403
