"""A dropped heartbeat connection is a suspicion: a crash is confirmed within the reconnect
window instead of a ping period, a quick reboot or a reconnect is not announced, and a
hang (connection kept open, no answers) still falls to the ping period.

Pings here come every 30 s, so anything detected within a few seconds was detected
through the dropped connection, not by the next scheduled ping."""

from __future__ import annotations

import asyncio
import time

from contracts import EquipmentFault
from monitoring.simulator import DeviceSimulator
from tests.monitoring.conftest import BRANCH, staff
from tests.support.waiting import eventually

SLOW_PINGS = {"monitoring_ping_interval_s": 30.0, "monitoring_reconnect_window_s": 0.6}


async def started(monitor, simulator_port: int, count: int) -> DeviceSimulator:
    simulator = DeviceSimulator.numbered(count, simulator_port, heartbeat_to=("127.0.0.1", monitor.heartbeat_port))
    await simulator.start_listening()
    await monitor.register(simulator)
    simulator.start_heartbeats()

    async def ready() -> bool:
        rows = (await monitor.client.get(f"/v1/branches/{BRANCH}/equipment", headers=staff())).json()
        return sum(row["health"] == "ok" for row in rows) == count

    await eventually(ready, timeout=40)
    await eventually(lambda: all(device.heartbeats_sent for device in simulator.devices.values()), timeout=10)
    return simulator


async def test_a_crash_is_announced_within_seconds_not_a_ping_period(open_monitor, simulator_port):
    async with open_monitor(**SLOW_PINGS) as monitor:
        simulator = await started(monitor, simulator_port, 5)
        try:
            began = await simulator.set_mode("sim-00003", "dead")
            await eventually(lambda: len(monitor.of(EquipmentFault)) == 1, timeout=10)
            detected = time.time() - began
            [fault] = monitor.of(EquipmentFault)
            assert fault.device_id == "sim-00003"
            assert "ping failed" in fault.reason
            # The reconnect window (0.6 s) plus two refused pings, far below the 30 s period.
            assert detected < 5.0, detected
        finally:
            await simulator.stop()


async def test_a_quick_reboot_and_reconnect_churn_are_not_announced(open_monitor, simulator_port):
    async with open_monitor(**SLOW_PINGS) as monitor:
        simulator = await started(monitor, simulator_port, 6)
        simulator._reboot_s = 0.2  # back well within the 0.6 s window
        try:
            for device_id in ("sim-00001", "sim-00002", "sim-00004"):
                await simulator.set_mode(device_id, "reboot")
            # A device whose connection drops while it answers pings: churn, not a fault.
            device = simulator.devices["sim-00005"]
            assert device._heartbeat is not None
            device._heartbeat.cancel()
            device._heartbeat = None
            simulator.start_heartbeats()
            await asyncio.sleep(3.0)  # several windows
            assert monitor.of(EquipmentFault) == []
            suspicions = monitor.app.state.watch._metrics.suspicions
            reconnected = suspicions.labels("reconnected")._value.get()
            answered = suspicions.labels("answered")._value.get()
            assert reconnected + answered >= 4
        finally:
            await simulator.stop()


async def test_a_hang_keeps_its_connection_and_is_found_by_the_pings(open_monitor, simulator_port):
    async with open_monitor(monitoring_ping_interval_s=1.0, monitoring_reconnect_window_s=0.6) as monitor:
        simulator = await started(monitor, simulator_port, 3)
        try:
            began = await simulator.set_mode("sim-00001", "hang")
            await eventually(lambda: len(monitor.of(EquipmentFault)) == 1, timeout=10)
            [fault] = monitor.of(EquipmentFault)
            assert fault.device_id == "sim-00001"
            assert "timeout" in fault.reason
            # Period + timeout + confirmation + timeout, with room for a busy machine.
            assert time.time() - began < 6.0
        finally:
            await simulator.stop()


async def test_simulated_devices_can_come_online_over_a_ramp(open_monitor, simulator_port):
    """A fleet powering up connects over seconds, not in one instant: with a ramp the
    simulator's heartbeat connections arrive spread over it."""
    async with open_monitor(**SLOW_PINGS) as monitor:
        simulator = DeviceSimulator.numbered(10, simulator_port, heartbeat_to=("127.0.0.1", monitor.heartbeat_port))
        await simulator.start_listening()
        await monitor.register(simulator)
        try:
            simulator.start_heartbeats(ramp_s=1.0)
            await asyncio.sleep(0.3)
            early = sum(1 for device in simulator.devices.values() if device.heartbeats_sent)
            assert 1 <= early <= 6, early
            await eventually(lambda: all(device.heartbeats_sent for device in simulator.devices.values()), timeout=10)
            assert monitor.of(EquipmentFault) == []
        finally:
            await simulator.stop()
