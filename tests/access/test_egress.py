"""Nobody is locked in: exit gates release while the serial line is down, exits are
decided before any line check, and an entry is only counted when the gate was really
commanded (and, with a door contact, the door really opened). Real pty serial lines."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from pydantic import ValidationError

from access.settings import GateConfig
from common.security import Role
from tests.access.conftest import BRANCH, Door, entry_pass, membership
from tests.access.test_door_faults import _wait_line
from tests.support import tokens
from tests.support.serialgate import GateSimulator, SocatPair
from tests.support.waiting import eventually

# Made once at import: long-lived, so it outlasts a whole test run.
OPERATOR = {"authorization": f"Bearer {tokens.issuer(ttl=timedelta(hours=6)).issue('op', [Role.OPERATOR])}"}


async def test_the_exit_releases_while_the_line_is_down(door, relay):
    pair, device = relay
    member = uuid.uuid4()
    await door.announce(membership(member))
    entered = (await door.scan(entry_pass(member))).json()
    assert (entered["granted"], entered["gate_result"]) == (True, "opened")
    device.stop()
    pair.unplug()
    await _wait_line(door, "down")
    refused = (await door.scan(entry_pass(member))).json()  # entry still fails secure
    assert (refused["granted"], refused["reason"]) == (False, "gate_offline")
    left = (await door.scan(entry_pass(member), gate="front-out")).json()
    assert (left["granted"], left["reason"], left["gate_result"]) == (True, "granted", "released_fail_safe")
    gates = {item["gate_id"]: item for item in (await door.client.get("/v1/gates", headers=OPERATOR)).json()}
    assert gates["front-out"]["line_down_policy"] == "fail_safe"
    assert gates["front-in"]["line_down_policy"] == "fail_secure"


def test_an_exit_gate_cannot_be_configured_to_fail_secure():
    with pytest.raises(ValidationError, match="never blocks egress"):
        GateConfig(
            gate_id="out", branch_id=BRANCH, direction="out", driver="ch340", port="/dev/x", line_down="fail_secure"
        )
    with pytest.raises(ValidationError, match="door contact"):
        GateConfig(gate_id="in", branch_id=BRANCH, driver="ch340", port="/dev/x", door_contact=True)


async def test_a_fail_safe_release_does_not_count_the_member_inside(open_door, relay):
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
        first = (await door.scan(entry_pass(member))).json()
        assert (first["granted"], first["gate_result"]) == (True, "released_fail_safe")
        again = (await door.scan(entry_pass(member))).json()  # no relay command reached the door
        assert (again["granted"], again["reason"]) == (True, "granted")
        occupancy = (await door.client.get(f"/v1/branches/{BRANCH}/occupancy", headers=OPERATOR)).json()
        assert occupancy["inside"] == 0


async def test_the_door_contact_confirms_an_entry_or_leaves_it_unconfirmed(open_door, tmp_path):
    pair = SocatPair(tmp_path, "controller").start()
    controller = GateSimulator(pair.theirs, "line").start()
    gates = [
        {
            "gate_id": "front-in",
            "branch_id": BRANCH,
            "driver": "line",
            "port": pair.ours,
            "channel": 3,
            "open_ms": 200,
            "door_contact": True,
            "door_confirm_grace_ms": 300,
        }
    ]
    try:
        async with open_door(controller, access_gates=gates) as door:
            walker, no_show = uuid.uuid4(), uuid.uuid4()
            await door.announce(membership(walker), membership(no_show))
            controller.door_opens = True
            walked = (await door.scan(entry_pass(walker))).json()
            assert (walked["granted"], walked["gate_result"]) == (True, "commanded_unconfirmed")
            await eventually(lambda: _gate_result(door, walked["attempt_id"], "door_opened"), timeout=3)
            inside = (await door.scan(entry_pass(walker))).json()
            assert (inside["granted"], inside["reason"]) == (False, "already_inside")

            controller.door_opens = False  # granted, commanded, but nobody pushed the door
            stayed = (await door.scan(entry_pass(no_show))).json()
            assert (stayed["granted"], stayed["gate_result"]) == (True, "commanded_unconfirmed")
            assert (await door.scan(entry_pass(no_show))).json()["reason"] == "already_inside"  # within the window

            async def let_in_again() -> bool:
                retry = (await door.scan(entry_pass(no_show))).json()
                return bool(retry["granted"])

            await eventually(let_in_again, timeout=3)  # the unconfirmed entry no longer counts
            assert await _gate_result(door, stayed["attempt_id"], "commanded_unconfirmed")
    finally:
        controller.stop()
        pair.stop()


async def _gate_result(door: Door, attempt_id: str, expected: str) -> bool:
    page = (await door.client.get("/v1/access-log?limit=50", headers=OPERATOR)).json()
    return any(item["attempt_id"] == attempt_id and item["gate_result"] == expected for item in page["items"])
