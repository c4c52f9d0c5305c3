"""A kiosk that retries after a timeout gets the first decision back: Idempotency-Key on
face entry, QR entry and remote open, scoped per gate and caller, expiring. Real relay
board on a pty, real facemodel sidecar."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from common.security import Role
from tests.access.conftest import BRANCH, entry_pass, membership
from tests.support import tokens
from tests.support.waiting import eventually


def kiosk(name: str = "kiosk-1") -> dict[str, str]:
    return {"authorization": f"Bearer {tokens.issuer().issue(f'device:{name}', [Role.DEVICE], [BRANCH])}"}


# Made once at import: long-lived, so it outlasts a whole test run.
OPERATOR = {"authorization": f"Bearer {tokens.issuer(ttl=timedelta(hours=6)).issue('op', [Role.OPERATOR])}"}


async def _attempts(door) -> list[dict]:
    return (await door.client.get("/v1/access-log?limit=100", headers=OPERATOR)).json()["items"]


async def test_a_retried_qr_entry_gets_the_first_decision_not_already_inside(door, relay):
    _, device = relay
    member = uuid.uuid4()
    await door.announce(membership(member))
    code = entry_pass(member)
    headers = {**kiosk(), "Idempotency-Key": "scan-0001-abcdef"}
    first, retry = await asyncio.gather(
        door.client.post("/v1/gates/front-in/pass", json={"code": code}, headers=headers),
        door.client.post("/v1/gates/front-in/pass", json={"code": code}, headers=headers),
    )  # the retry arrives while the first is still being decided
    late = await door.client.post("/v1/gates/front-in/pass", json={"code": code}, headers=headers)
    decisions = [response.json() for response in (first, retry, late)]
    assert {(d["granted"], d["reason"], d["gate_result"]) for d in decisions} == {(True, "granted", "opened")}
    assert len({d["attempt_id"] for d in decisions}) == 1
    assert sorted(response.headers.get("idempotent-replayed", "") for response in (first, retry, late)) == [
        "",
        "true",
        "true",
    ]
    await asyncio.sleep(0.3)
    assert len(device.on_frames(1)) == 1  # the door opened once
    assert len(await _attempts(door)) == 1

    elsewhere = await door.client.post(
        "/v1/gates/front-in/pass",
        json={"code": code},
        headers={**kiosk("kiosk-2"), "Idempotency-Key": "scan-0001-abcdef"},
    )  # another kiosk's key space: a fresh attempt, refused by anti-passback as a new scan would be
    assert elsewhere.json()["reason"] in ("already_inside", "pass_replayed")
    other_code = await door.client.post("/v1/gates/front-in/pass", json={"code": entry_pass(member)}, headers=headers)
    assert other_code.status_code == 409
    for bad in ("short", "has space in it", "x" * 101):
        refused = await door.client.post(
            "/v1/gates/front-in/pass", json={"code": code}, headers={**kiosk(), "Idempotency-Key": bad}
        )
        assert refused.status_code == 422, bad


async def test_keys_expire(open_door):
    async with open_door(access_idempotency_ttl_s=1) as door:
        member = uuid.uuid4()
        await door.announce(membership(member))
        code = entry_pass(member)
        headers = {**kiosk(), "Idempotency-Key": "scan-0002-abcdef"}
        first = (await door.client.post("/v1/gates/front-in/pass", json={"code": code}, headers=headers)).json()
        await asyncio.sleep(1.2)
        later = (await door.client.post("/v1/gates/front-in/pass", json={"code": code}, headers=headers)).json()
        assert later["attempt_id"] != first["attempt_id"]
        assert later["reason"] == "pass_replayed"


async def test_a_retried_face_entry_and_remote_open_are_decided_once(door, relay, face_service, photo_bytes):
    _, device = relay
    member = await door.enrol(face_service, photo_bytes, "obama.jpg")
    headers = {**kiosk(), "content-type": "image/jpeg", "Idempotency-Key": "face-0001-abcdef"}
    answers = [
        (await door.client.post("/v1/gates/front-in/face", content=photo_bytes["obama2.jpg"], headers=headers)).json()
        for _ in range(2)
    ]
    assert answers[0] == answers[1]
    assert (answers[0]["granted"], answers[0]["member_id"]) == (True, str(member))

    opening = {**OPERATOR, "Idempotency-Key": "console-open-0001"}
    opens = [
        (await door.client.post("/v1/gates/front-in/open", json={"reason": "stuck member"}, headers=opening)).json()
        for _ in range(2)
    ]
    assert opens[0]["attempt_id"] == opens[1]["attempt_id"]
    await eventually(lambda: len(device.on_frames(1)) == 2, timeout=3)  # one face entry, one remote open
    await asyncio.sleep(0.3)
    assert len(device.on_frames(1)) == 2
    assert len(await _attempts(door)) == 2
