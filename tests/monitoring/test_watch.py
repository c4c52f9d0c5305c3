"""The monitoring service end to end with simulated devices on loopback: registry →
pinger/heartbeats → detector → faults and events through the outbox."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from contracts import EquipmentFault, EquipmentRecovered
from monitoring.registry import spec_of
from monitoring.simulator import DeviceSimulator
from tests.monitoring.conftest import BRANCH, staff
from tests.support.waiting import eventually


async def all_healthy(monitor, count: int) -> None:
    async def check() -> bool:
        response = await monitor.client.get(f"/v1/branches/{BRANCH}/equipment", headers=staff())
        return [item["health"] for item in response.json()].count("ok") == count

    await eventually(check, timeout=15)


async def test_a_dead_device_raises_one_fault_and_its_return_one_recovery(monitor, simulator_port):
    simulator = DeviceSimulator.numbered(20, simulator_port)
    await simulator.start()
    try:
        await monitor.register(simulator)
        await all_healthy(monitor, 20)
        began = await simulator.set_mode("sim-00007", "dead")
        await eventually(lambda: len(monitor.of(EquipmentFault)) == 1, timeout=10)
        [fault] = monitor.of(EquipmentFault)
        assert fault.device_id == "sim-00007"
        assert fault.branch_id == BRANCH
        assert "ping failed" in fault.reason
        # One period (1 s here) plus timeouts and the confirmation: well inside two periods.
        assert time.time() - began < 3.0

        await simulator.set_mode("sim-00007", "ok")
        await eventually(lambda: len(monitor.of(EquipmentRecovered)) == 1, timeout=10)
        [recovered] = monitor.of(EquipmentRecovered)
        assert recovered.fault_id == fault.fault_id
        await asyncio.sleep(1.5)
        assert len(monitor.of(EquipmentFault)) == 1  # and nothing about the other 19

        history = (await monitor.client.get("/v1/equipment/sim-00007/history", headers=staff())).json()
        assert [(row["from_health"], row["to_health"], row["announced"]) for row in history] == [
            ("faulty", "ok", True),
            ("ok", "faulty", True),
            ("unknown", "ok", False),
        ]
    finally:
        await simulator.stop()


async def test_a_device_registered_again_is_watched_afresh_by_a_replica_that_hears_of_both_at_once(
    monitor, simulator_port
):
    # The replica holding the branch may learn of a retirement and of a registration under
    # the same id in one reload. The old registration's open fault, withdrawn with it,
    # must not carry over: the new device's own failure is announced.
    simulator = DeviceSimulator.numbered(1, simulator_port)
    await simulator.start()
    try:
        await monitor.register(simulator)
        await all_healthy(monitor, 1)
        registry, watch = monitor.app.state.registry, monitor.app.state.watch
        old = spec_of(await registry.get("sim-00000"))
        assert (await monitor.client.delete("/v1/equipment/sim-00000", headers=staff())).status_code == 204
        await monitor.register(simulator)
        watch.watch(old, faulty_since=(uuid.uuid4(), datetime.now(UTC)))  # what that replica still holds
        await registry.reload(["sim-00000"])
        await simulator.set_mode("sim-00000", "dead")
        await eventually(lambda: len(monitor.of(EquipmentFault)) == 1, timeout=10)
        assert monitor.of(EquipmentFault)[0].device_id == "sim-00000"
    finally:
        await simulator.stop()


async def test_a_flapping_device_raises_no_storm(monitor, simulator_port):
    simulator = DeviceSimulator.numbered(5, simulator_port)
    await simulator.start()
    try:
        await monitor.register(simulator)
        await all_healthy(monitor, 5)
        await simulator.set_mode("sim-00001", "flap")  # every other echo fails
        await asyncio.sleep(6)  # six periods
        assert monitor.of(EquipmentFault) == []
        assert simulator.devices["sim-00001"].echoes >= 8  # confirmations were made
    finally:
        await simulator.stop()


async def test_a_device_in_maintenance_is_not_announced_until_the_window_ends_still_down(monitor, simulator_port):
    simulator = DeviceSimulator.numbered(3, simulator_port)
    await simulator.start()
    try:
        await monitor.register(simulator)
        await all_healthy(monitor, 3)
        now = datetime.now(UTC)
        window = {"starts_at": now.isoformat(), "ends_at": (now + timedelta(seconds=4)).isoformat(), "reason": "belt"}
        response = await monitor.client.post("/v1/equipment/sim-00002/maintenance", json=window, headers=staff())
        assert response.status_code == 201, response.text
        await simulator.set_mode("sim-00002", "dead")
        await asyncio.sleep(2.5)
        assert monitor.of(EquipmentFault) == []
        [silent, *_] = (await monitor.client.get("/v1/equipment/sim-00002/history", headers=staff())).json()
        assert (silent["to_health"], silent["announced"]) == ("faulty", False)  # known, not announced
        # The window ends with the device still dead: now it is news.
        await eventually(lambda: len(monitor.of(EquipmentFault)) == 1, timeout=5)
        assert "still down after maintenance" in monitor.of(EquipmentFault)[0].reason
    finally:
        await simulator.stop()


async def test_a_device_repaired_inside_its_window_is_never_announced(monitor, simulator_port):
    simulator = DeviceSimulator.numbered(2, simulator_port)
    await simulator.start()
    try:
        await monitor.register(simulator)
        await all_healthy(monitor, 2)
        now = datetime.now(UTC)
        window = {"starts_at": now.isoformat(), "ends_at": (now + timedelta(seconds=6)).isoformat(), "reason": "fix"}
        await monitor.client.post("/v1/equipment/sim-00000/maintenance", json=window, headers=staff())
        await simulator.set_mode("sim-00000", "dead")
        await asyncio.sleep(2)
        await simulator.set_mode("sim-00000", "ok")
        await asyncio.sleep(6)
        assert monitor.of(EquipmentFault) == []
        assert monitor.of(EquipmentRecovered) == []
    finally:
        await simulator.stop()


async def test_hang_slow_and_garbage_devices_are_faults(monitor, simulator_port):
    simulator = DeviceSimulator.numbered(4, simulator_port, slow_s=1.0)
    await simulator.start()
    try:
        await monitor.register(simulator)
        await all_healthy(monitor, 4)
        for device_id, mode in (("sim-00000", "hang"), ("sim-00001", "slow"), ("sim-00002", "garbage")):
            await simulator.set_mode(device_id, mode)
        await eventually(lambda: len(monitor.of(EquipmentFault)) == 3, timeout=10)
        reasons = {fault.device_id: fault.reason for fault in monitor.of(EquipmentFault)}
        assert "timeout" in reasons["sim-00000"]
        assert "timeout" in reasons["sim-00001"]
        assert "sim-00003" not in reasons
    finally:
        await simulator.stop()
