"""The monitoring service end to end with simulated devices on loopback: registry →
pinger/heartbeats → detector → faults and events through the outbox."""

from __future__ import annotations

import asyncio
import time

from common.events.catalog import EquipmentFault, EquipmentRecovered
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
