"""A branch with active liveness: the kiosk's burst goes through real inference; a still
photo held to the camera is refused with ``liveness_failed`` and the gate stays shut.

The genuine burst is one test photo warped so the nose shifts across the eye line as in
a head turn (tests/support/bursts.py): it proves the door wiring and the geometry checks,
not that a real member's turn passes at a real kiosk."""

from __future__ import annotations

import base64

import pytest

from tests.access.conftest import BRANCH
from tests.support.bursts import head_turn, held_photo
from tests.support.waiting import eventually


@pytest.fixture
async def live_door(open_door):
    async with open_door(access_branches={BRANCH: {"liveness": "active"}}) as door:
        yield door


async def send_burst(door, frames: list[bytes], gate: str = "front-in"):
    body = {"frames": [base64.b64encode(frame).decode() for frame in frames]}
    return await door.client.post(f"/v1/gates/{gate}/face-burst", json=body, headers=door.kiosk())


async def test_a_photo_held_to_the_camera_is_refused_and_a_head_turn_enters(live_door, face_service, photo_bytes):
    door = live_door
    member = await door.enrol(face_service, photo_bytes, "obama.jpg")
    photo = photo_bytes["obama2.jpg"]

    single = (await door.face(photo)).json()  # this branch wants a burst
    assert (single["granted"], single["reason"], single["detail"]) == (False, "liveness_failed", "burst_required")
    for still in ([photo, photo, photo], held_photo(photo)):
        refused = (await send_burst(door, still)).json()
        assert (refused["granted"], refused["reason"]) == (False, "liveness_failed"), refused
        assert refused["member_id"] is None
    assert door.device.on_frames(1) == []

    turned = (await send_burst(door, head_turn(photo_bytes["obama.jpg"], face_service.holder.current))).json()
    assert (turned["granted"], turned["member_id"], turned["gate_result"]) == (True, str(member), "opened")
    await eventually(lambda: len(door.device.on_frames(1)) == 1, timeout=3)


async def test_bad_bursts_are_4xx(live_door, photo_bytes):
    door = live_door
    one = await send_burst(door, [photo_bytes["obama.jpg"]])
    assert one.status_code == 422
    five = await send_burst(door, [photo_bytes["obama.jpg"]] * 5)
    assert five.status_code == 422
    not_base64 = await door.client.post(
        "/v1/gates/front-in/face-burst", json={"frames": ["%%%% not base64 %%%%", "x" * 20]}, headers=door.kiosk()
    )
    assert not_base64.status_code == 422
    not_images = await send_burst(door, [b"GIF89a not an image at all", b"%PDF-1.7 not an image either"])
    assert not_images.status_code == 422
    anonymous = await door.client.post("/v1/gates/front-in/face-burst", json={"frames": ["x" * 20] * 2})
    assert anonymous.status_code == 401
