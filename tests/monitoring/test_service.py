"""monitoring's API and its other signals: device tokens on the heartbeat line, overdue
heartbeats, devices reporting their own faults, gates reported by access, escalation of
unacknowledged critical faults, live updates, a restart in the middle of a fault."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import httpx

from common.events.envelope import OutgoingMessage
from common.security import Role
from contracts import (
    EquipmentFault,
    EquipmentFaultEscalated,
    EquipmentFaultWithdrawn,
    EquipmentRecovered,
    GateStatusChanged,
)
from monitoring.detector import Health
from monitoring.registry import spec_of
from monitoring.simulator import DeviceSimulator
from monitoring.watch import Change, DeviceSpec
from tests.monitoring.conftest import BRANCH, staff
from tests.support.apps import serving
from tests.support.waiting import eventually


def heartbeat_device(device_id: str = "hvac-01", period: int = 5, **fields) -> dict:
    return {
        "device_id": device_id,
        "branch_id": BRANCH,
        "kind": "hvac",
        "name": "Air conditioner",
        "heartbeat_period_s": period,
        **fields,
    }


async def hello(port: int, device_id: str, token: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, dict]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(json.dumps({"device_id": device_id, "token": token}).encode() + b"\n")
    await writer.drain()
    return reader, writer, json.loads(await reader.readline())


async def test_registration_validates_and_checks_the_branch(monitor):
    client = monitor.client
    created = await client.post("/v1/equipment", json=heartbeat_device(), headers=staff())
    assert created.status_code == 201, created.text
    assert len(created.json()["token"]) >= 40
    again = await client.post("/v1/equipment", json=heartbeat_device(), headers=staff())
    assert again.status_code == 409
    for bad in (
        heartbeat_device("x", ping_url="ftp://10.0.0.9/echo"),
        heartbeat_device("y", heartbeat_period_s=None),  # nothing to watch it by
        heartbeat_device("z", kind="toaster"),
        heartbeat_device("bad id!"),
        heartbeat_device("w", heartbeat_period_s=1),
    ):
        response = await client.post("/v1/equipment", json=bad, headers=staff())
        assert response.status_code == 422, bad
    owner_elsewhere = staff(Role.BRANCH_OWNER, ("hongdae",))
    assert (await client.post("/v1/equipment", json=heartbeat_device("a"), headers=owner_elsewhere)).status_code == 403
    assert (await client.get("/v1/equipment/hvac-01", headers=owner_elsewhere)).status_code == 403
    assert (await client.get(f"/v1/branches/{BRANCH}/equipment", headers=staff(Role.CUSTOMER))).status_code == 403
    assert (await client.get("/v1/equipment/nope", headers=staff())).status_code == 404
    assert (await client.get("/v1/faults", headers=staff(Role.BRANCH_OWNER, (BRANCH,)))).status_code == 403
    owner = staff(Role.BRANCH_OWNER, (BRANCH,))
    assert (await client.get(f"/v1/faults?branch_id={BRANCH}", headers=owner)).json() == []
    moved = await client.put("/v1/equipment/hvac-01", json=heartbeat_device(branch_id="hongdae"), headers=staff())
    assert moved.status_code == 409


async def test_heartbeats_need_the_device_token_and_an_overdue_one_is_a_fault(monitor):
    registered = (await monitor.client.post("/v1/equipment", json=heartbeat_device(period=5), headers=staff())).json()
    _, writer, refused = await hello(monitor.heartbeat_port, "hvac-01", "x" * 43)
    assert refused == {"error": "unauthenticated"}
    writer.close()
    reader, writer, accepted = await hello(monitor.heartbeat_port, "hvac-01", registered["token"])
    assert accepted == {"ok": True}
    writer.write(b'{"status": "ok", "readings": {"supply_temp_c": 14.5}}\n')
    await writer.drain()
    assert json.loads(await reader.readline()) == {"ok": True}

    async def learnt() -> bool:
        status = (await monitor.client.get("/v1/equipment/hvac-01", headers=staff())).json()
        return status["health"] == "ok" and status["live"]["readings"] == {"supply_temp_c": 14.5}

    await eventually(learnt, timeout=3)

    # Silence: overdue after 5 s * 1.5.
    await eventually(lambda: len(monitor.of(EquipmentFault)) == 1, timeout=12)
    assert monitor.of(EquipmentFault)[0].reason == "heartbeat overdue"
    writer.write(b'{"status": "ok"}\n')
    await writer.drain()
    await reader.readline()
    writer.close()


async def test_a_device_reporting_its_own_fault_is_believed_at_once(monitor):
    registered = (await monitor.client.post("/v1/equipment", json=heartbeat_device(), headers=staff())).json()
    reader, writer, _ = await hello(monitor.heartbeat_port, "hvac-01", registered["token"])
    writer.write(b'{"status": "compressor_fault", "readings": {}}\n')
    await writer.drain()
    await reader.readline()
    await eventually(lambda: len(monitor.of(EquipmentFault)) == 1, timeout=3)
    assert monitor.of(EquipmentFault)[0].reason == "device reports compressor_fault"
    writer.close()


async def test_a_rotated_token_retires_the_old_one(monitor):
    first = (await monitor.client.post("/v1/equipment", json=heartbeat_device(), headers=staff())).json()
    second = (await monitor.client.post("/v1/equipment/hvac-01/token", headers=staff())).json()
    assert second["token"] != first["token"]
    _, writer, answer = await hello(monitor.heartbeat_port, "hvac-01", first["token"])
    assert answer == {"error": "unauthenticated"}
    writer.close()
    _, writer, answer = await hello(monitor.heartbeat_port, "hvac-01", second["token"])
    assert answer == {"ok": True}
    writer.close()


async def test_a_gate_line_reported_down_by_access_is_a_fault(monitor):
    gate = heartbeat_device("front-in", kind="gate", name="Front door", criticality="critical", heartbeat_period_s=600)
    await monitor.client.post("/v1/equipment", json=gate, headers=staff())
    bus = monitor.app.state.kernel.bus
    down = GateStatusChanged(
        branch_id=BRANCH, gate_id="front-in", line="down", detail="no such device", changed_at=datetime.now(UTC)
    )
    await bus.publish_many([OutgoingMessage.of(down), OutgoingMessage.of(down)])
    await eventually(lambda: len(monitor.of(EquipmentFault)) == 1, timeout=3)
    assert monitor.of(EquipmentFault)[0].criticality == "critical"
    up = GateStatusChanged(branch_id=BRANCH, gate_id="front-in", line="up", changed_at=datetime.now(UTC))
    await bus.publish_many([OutgoingMessage.of(up)])
    await eventually(lambda: len(monitor.of(EquipmentRecovered)) == 1, timeout=3)
    elsewhere = GateStatusChanged(branch_id="hongdae", gate_id="front-in", line="down", changed_at=datetime.now(UTC))
    await bus.publish_many([OutgoingMessage.of(elsewhere)])
    await asyncio.sleep(0.3)
    assert len(monitor.of(EquipmentFault)) == 1  # another branch's gate of the same name


async def test_an_unacknowledged_critical_fault_is_escalated_once_and_withdrawn_when_retired(open_monitor):
    async with open_monitor(monitoring_escalate_after_s=0.5) as monitor:
        for name in ("door-a", "door-b"):
            body = heartbeat_device(name, kind="gate", criticality="critical")
            registered = (await monitor.client.post("/v1/equipment", json=body, headers=staff())).json()
            reader, writer, _ = await hello(monitor.heartbeat_port, name, registered["token"])
            writer.write(b'{"status": "jammed"}\n')
            await writer.drain()
            await reader.readline()
            writer.close()
        await eventually(lambda: len(monitor.of(EquipmentFault)) == 2, timeout=3)
        owner = staff(Role.BRANCH_OWNER, (BRANCH,))
        door_b = next(fault for fault in monitor.of(EquipmentFault) if fault.device_id == "door-b")
        acked = await monitor.client.post(f"/v1/faults/{door_b.fault_id}/ack", headers=owner)
        assert acked.status_code == 200
        assert acked.json()["acknowledged_at"] is not None
        await eventually(lambda: len(monitor.of(EquipmentFaultEscalated)) == 1, timeout=12)
        await asyncio.sleep(0.5)
        [escalated] = monitor.of(EquipmentFaultEscalated)
        assert escalated.device_id == "door-a"
        assert (await monitor.client.post(f"/v1/faults/{uuid.uuid4()}/ack", headers=owner)).status_code == 404
        open_faults = (await monitor.client.get(f"/v1/faults?branch_id={BRANCH}", headers=owner)).json()
        assert {fault["device_id"] for fault in open_faults} == {"door-a", "door-b"}

        # Retiring the devices withdraws their faults, and says so: the operations team
        # was handed door-a's and hears it is over.
        spec = spec_of(await monitor.app.state.registry.get("door-a"))
        for name in ("door-a", "door-b"):
            assert (await monitor.client.delete(f"/v1/equipment/{name}", headers=owner)).status_code == 204
        await eventually(lambda: len(monitor.of(EquipmentFaultWithdrawn)) == 2, timeout=3)
        withdrawn = {event.device_id: event for event in monitor.of(EquipmentFaultWithdrawn)}
        assert (withdrawn["door-a"].escalated, withdrawn["door-b"].escalated) == (True, False)
        assert withdrawn["door-b"].fault_id == door_b.fault_id
        assert (await monitor.client.get(f"/v1/faults?branch_id={BRANCH}", headers=owner)).json() == []
        assert (await monitor.client.delete("/v1/equipment/door-a", headers=owner)).status_code == 404
        # A recovery the watch saw just before the retirement, recorded after it, is
        # dropped: the withdrawal stays the outage's last event, and the writer does not
        # stall on the missing row.
        late = Change(
            spec=spec,
            previous=Health.FAULTY,
            health=Health.OK,
            reason="answers again",
            at=datetime.now(UTC),
            closes=withdrawn["door-a"].fault_id,
        )
        unannounced = Change(
            spec=spec, previous=Health.OK, health=Health.UNKNOWN, reason="silent", at=datetime.now(UTC)
        )
        await monitor.app.state.faults.record([late])
        await monitor.app.state.faults.record([late, unannounced])
        await asyncio.sleep(0.3)
        assert len(monitor.of(EquipmentFaultWithdrawn)) == 2
        assert monitor.of(EquipmentRecovered) == []


async def test_a_change_seen_before_a_retirement_does_not_land_on_the_device_registered_again(monitor):
    body = heartbeat_device("bike-7", criticality="critical")
    assert (await monitor.client.post("/v1/equipment", json=body, headers=staff())).status_code == 201
    before = spec_of(await monitor.app.state.registry.get("bike-7"))
    assert (await monitor.client.delete("/v1/equipment/bike-7", headers=staff())).status_code == 204
    assert (await monitor.client.post("/v1/equipment", json=body, headers=staff())).status_code == 201
    again = spec_of(await monitor.app.state.registry.get("bike-7"))
    assert again.registered_at != before.registered_at

    def silent(spec: DeviceSpec) -> Change:
        return Change(
            spec=spec,
            previous=Health.OK,
            health=Health.FAULTY,
            reason="no heartbeat",
            at=datetime.now(UTC),
            opens=uuid.uuid4(),
        )

    # The old registration's fault, recorded late, is dropped and leaves the new row be...
    await monitor.app.state.faults.record([silent(before)])
    shown = (await monitor.client.get("/v1/equipment/bike-7", headers=staff())).json()
    assert shown["health"] == "unknown"
    # ...while the new registration's own is recorded (the relay sends events in order:
    # once this one is out, a wrongly sent one would be too).
    ours = silent(again)
    await monitor.app.state.faults.record([ours])
    await eventually(lambda: len(monitor.of(EquipmentFault)) >= 1, timeout=3)
    assert [fault.fault_id for fault in monitor.of(EquipmentFault)] == [ours.opens]
    shown = (await monitor.client.get("/v1/equipment/bike-7", headers=staff())).json()
    assert shown["health"] == "faulty"


async def test_live_updates_stream_as_server_sent_events(monitor, simulator_port):
    simulator = DeviceSimulator.numbered(2, simulator_port)
    await simulator.start()
    try:
        await monitor.register(simulator)
        async with serving(monitor.app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
            owner = staff(Role.BRANCH_OWNER, (BRANCH,))
            async with client.stream("GET", f"/v1/stream?branch_id={BRANCH}", headers=owner) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                seen: list[dict] = []
                async for line in stream.aiter_lines():
                    if line.startswith("data: "):
                        seen.append(json.loads(line[6:]))
                        if any(item["health"] == "faulty" for item in seen):
                            break
                        if len(seen) == 2:  # both learnt: now break one
                            await simulator.set_mode("sim-00001", "dead")
            faulty = [item for item in seen if item["health"] == "faulty"]
            assert faulty[0]["device_id"] == "sim-00001"
            assert faulty[0]["fault_id"] is not None
            assert (await client.get("/v1/stream", headers=owner)).status_code == 403
    finally:
        await simulator.stop()


async def test_a_restart_keeps_the_open_fault_and_its_recovery_closes_it(open_monitor, simulator_port):
    simulator = DeviceSimulator.numbered(2, simulator_port)
    await simulator.start()
    try:
        async with open_monitor() as monitor:
            await monitor.register(simulator)
            await simulator.set_mode("sim-00000", "dead")
            await eventually(lambda: len(monitor.of(EquipmentFault)) == 1, timeout=10)
            [fault] = monitor.of(EquipmentFault)
        await simulator.set_mode("sim-00000", "ok")
        async with open_monitor() as restarted:
            await eventually(lambda: len(restarted.of(EquipmentRecovered)) == 1, timeout=10)
            assert restarted.of(EquipmentRecovered)[0].fault_id == fault.fault_id
            assert restarted.of(EquipmentFault) == []  # not announced a second time
    finally:
        await simulator.stop()


async def test_a_bulk_import_cannot_take_over_another_branchs_device(open_monitor):
    async with open_monitor(monitoring_bulk_max_per_branch=2) as monitor:
        client = monitor.client
        theirs = heartbeat_device("tm-9", branch_id="hongdae", name="Their treadmill")
        registered = (await client.post("/v1/equipment", json=theirs, headers=staff())).json()
        owner = staff(Role.BRANCH_OWNER, (BRANCH,))
        hijack = [heartbeat_device("tm-9", name="Mine now"), heartbeat_device("tm-mine")]
        refused = await client.put("/v1/equipment", json=hijack, headers=owner)
        assert refused.status_code == 409, refused.text
        assert "hongdae" not in refused.text  # nor which branch holds it
        operator_too = await client.put("/v1/equipment", json=hijack, headers=staff())
        assert operator_too.status_code == 409  # nobody moves a device between branches
        kept = (await client.get("/v1/equipment/tm-9", headers=staff())).json()
        assert (kept["branch_id"], kept["name"]) == ("hongdae", "Their treadmill")
        assert (await client.get("/v1/equipment/tm-mine", headers=staff())).status_code == 404  # all or nothing
        _, writer, answer = await hello(monitor.heartbeat_port, "tm-9", registered["token"])
        assert answer == {"ok": True}  # its token was not replaced
        writer.close()

        three = [heartbeat_device(f"d-{n}") for n in range(3)]
        too_many = await client.put("/v1/equipment", json=three, headers=owner)
        assert too_many.status_code == 422
        assert "at most 2" in too_many.text
        mixed = [heartbeat_device(f"d-{n}") for n in range(2)] + [
            heartbeat_device(f"h-{n}", branch_id="hongdae") for n in range(2)
        ]
        assert (await client.put("/v1/equipment", json=mixed, headers=staff())).status_code == 200
        own_again = await client.put("/v1/equipment", json=[heartbeat_device("d-0", name="Renamed")], headers=owner)
        assert own_again.status_code == 200  # re-registering one's own device still works
