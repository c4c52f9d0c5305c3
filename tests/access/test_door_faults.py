"""The door when things break: the serial line pulled (fail-secure and fail-safe), a
controller that refuses, garbage on the line, and facemodel losing its memory."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import text

from common.security import Role
from contracts import AccessGranted
from tests.access.conftest import BRANCH, Door, entry_pass, membership
from tests.support import tokens
from tests.support.serialgate import GateSimulator, SocatPair
from tests.support.waiting import eventually


async def gate_line(door: Door, gate: str = "front-in") -> str:
    operator = {"authorization": f"Bearer {tokens.issuer().issue('op', [Role.OPERATOR])}"}
    gates = (await door.client.get("/v1/gates", headers=operator)).json()
    return next(item["line"] for item in gates if item["gate_id"] == gate)


async def test_fail_secure_gate_refuses_while_the_line_is_down_and_recovers(door, relay):
    pair, device = relay
    member = uuid.uuid4()
    await door.announce(membership(member))
    device.stop()
    pair.unplug()
    await _wait_line(door, "down")
    refused = (await door.scan(entry_pass(member))).json()
    assert (refused["granted"], refused["reason"], refused["gate_result"]) == (False, "gate_offline", "not_commanded")
    statuses = [event for event in await _outbox(door) if event == "GateStatusChanged.v1"]
    assert len(statuses) >= 2  # front-in and front-out share the line
    pair.start()
    replugged = GateSimulator(pair.theirs, "ch340").start()
    try:
        await _wait_line(door, "up")
        granted = (await door.scan(entry_pass(member))).json()
        assert (granted["granted"], granted["gate_result"]) == (True, "opened")
        await eventually(lambda: len(replugged.on_frames(1)) == 1, timeout=3)
    finally:
        replugged.stop()


async def test_fail_safe_gate_lets_the_decision_stand(open_door, relay):
    pair, device = relay
    gates = [
        {"gate_id": "front-in", "branch_id": BRANCH, "driver": "ch340", "port": pair.ours, "line_down": "fail_safe"}
    ]
    async with open_door(access_gates=gates) as door:
        member = uuid.uuid4()
        await door.announce(membership(member))
        device.stop()
        pair.unplug()
        await _wait_line(door, "down")
        decision = (await door.scan(entry_pass(member))).json()
        assert (decision["granted"], decision["gate_result"]) == (True, "released_fail_safe")


async def test_controller_refusal_grants_nothing_and_garbage_is_ignored(open_door, tmp_path):
    pair = SocatPair(tmp_path, "controller").start()
    controller = GateSimulator(pair.theirs, "line").start()
    gates = [{"gate_id": "front-in", "branch_id": BRANCH, "driver": "line", "port": pair.ours, "channel": 4}]
    try:
        async with open_door(controller, access_gates=gates, access_line_timeout_ms=150, access_line_retries=1) as door:
            member = uuid.uuid4()
            await door.announce(membership(member))
            controller.replies.extend(["ERR 3", "ERR 5"])
            refused = (await door.scan(entry_pass(member))).json()
            assert (refused["granted"], refused["reason"], refused["gate_result"]) == (
                False,
                "gate_failed",
                "refused_err_5",
            )
            controller.send(b"\x00\x13garbage without end")
            controller.replies.extend(["garbage", "half"])
            granted = (await door.scan(entry_pass(member))).json()  # not "already_inside": nothing was granted
            assert (granted["granted"], granted["gate_result"]) == (True, "opened")
            assert [text for _, text in controller.commands][-1] == "OPEN 4 3000"
    finally:
        controller.stop()
        pair.stop()


async def test_a_chain_member_is_a_miss_once_then_a_hit(door, face_service, photo_bytes):
    member = uuid.uuid4()
    analysis = await face_service.analyse(photo_bytes["obama.jpg"])
    await door.announce(
        membership(member, branch_id=None),
        door.enrolment(member, analysis.embedding, model="m"),
    )
    assert member not in door.service.faces.hot[BRANCH]  # chain-wide: not pre-loaded everywhere
    first = (await door.face(photo_bytes["obama2.jpg"])).json()
    assert (first["granted"], first["cache"]) == (True, "miss")
    assert {"chain_search", "cold_search"} & set(first["timings_ms"])  # looked up past the branch gallery
    await door.face(photo_bytes["obama2.jpg"], gate="front-out")
    again = (await door.face(photo_bytes["obama3.jpg"])).json()
    assert (again["granted"], again["cache"]) == (True, "hit")
    metrics = (await door.client.get("/metrics")).text
    # Three recognitions (entry, exit, entry): one miss.
    assert 'access_face_cache_lookups_total{result="miss"} 1.0' in metrics
    assert "access_face_cache_hit_ratio 0.6666" in metrics


async def test_frequent_visitors_of_other_branches_are_prefetched(door, face_service, photo_bytes):
    member = uuid.uuid4()
    analysis = await face_service.analyse(photo_bytes["obama.jpg"])
    await door.announce(
        membership(member, branch_id=None),
        door.enrolment(member, analysis.embedding, model="m"),
        *(
            AccessGranted(
                attempt_id=uuid.uuid4(),
                branch_id="jamsil",
                gate_id="g1",
                direction="in",
                member_id=member,
                method="face",
                decided_at=datetime.now(UTC),
            )
            for _ in range(3)
        ),
    )
    await door.service.faces.refresh_prefetch()
    assert member in door.service.faces.hot[BRANCH]
    assert (await door.face(photo_bytes["obama2.jpg"])).json()["cache"] == "hit"


async def test_a_restarted_facemodel_gets_its_gallery_back(door, face_service, photo_bytes):
    await door.enrol(face_service, photo_bytes, "obama.jpg")
    face_service.galleries.clear()  # the sidecar restarted with empty memory
    decision = (await door.face(photo_bytes["obama2.jpg"])).json()
    assert (decision["granted"], decision["cache"]) == (True, "hit")
    face_service.galleries.clear()
    await door.service.faces.ensure_loaded()
    assert len(face_service.galleries[f"access-{BRANCH}"]) == 1


async def _wait_line(door: Door, state: str) -> None:
    async def check() -> bool:
        return await gate_line(door) == state

    await eventually(check, timeout=5)


async def _outbox(door: Door) -> list[str]:
    async with door.app.state.kernel.db.sessions() as session:
        return list((await session.scalars(text("SELECT routing_key FROM outbox"))).all())
