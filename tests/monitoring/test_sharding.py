"""Three real monitoring processes share the devices by branch through leases: every
device is pinged by exactly one of them; after one is killed (``kill -9``, its leases
simply stop being renewed) the others take its shards within a ping period, every device
is pinged again by exactly one survivor — promptly, not at its phase on the survivor's
grid — and nobody is announced faulty; a device already faulty under the killed replica
keeps its one open fault (restored, not announced again). Heartbeats all go to one
replica, which relays them to the holders (otherwise the holders would find them
overdue)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx

from common.migrations import upgrade
from common.security import Role
from monitoring.simulator import DeviceSimulator
from tests.support import tokens
from tests.support.apps import free_port, serving
from tests.support.infra import PG_ADMIN_URL, PostgresDatabases, require_postgres, require_rabbitmq
from tests.support.monitoring_shards import Replicas, lease_rows, pinged_by, start_replicas, wait_for_takeover

PERIOD_S = 2.0
DEVICES = 60
BRANCHES = 12
SHARDS = 16
# Small beside the period, so a first ping at its phase on the survivor's grid (up to a
# whole period after the takeover) cannot pass for a prompt one.
SPREAD_S = 0.2


def pings_of(simulator: DeviceSimulator) -> dict[str, list[tuple[float, str]]]:
    return {device.device_id: list(device.pings) for device in simulator.devices.values()}


async def test_three_replicas_share_devices_and_take_over_a_killed_one(tmp_path: Path) -> None:
    require_postgres()
    require_rabbitmq()
    databases = PostgresDatabases(PG_ADMIN_URL)
    database = databases.create("monshard")
    upgrade("monitoring", database)
    operator = tokens.issuer().issue(str(uuid.uuid4()), [Role.OPERATOR], [])
    simulator: DeviceSimulator | None = None
    replicas: Replicas | None = None
    try:
        async with serving(tokens.jwks_app()) as auth_url:
            replicas = start_replicas(
                3,
                database=database,
                auth_url=auth_url,
                scratch=tmp_path,
                period_s=PERIOD_S,
                shards=SHARDS,
                timeout_s=0.5,
                log_level="INFO",
                takeover_spread_s=SPREAD_S,
            )
            # Every heartbeat goes to the last replica, the one never killed.
            simulator = DeviceSimulator.numbered(
                DEVICES, free_port(), prefix="shard", heartbeat_to=("127.0.0.1", replicas.heartbeat_ports[2])
            )
            await simulator.start_listening()
            body = [
                {
                    "device_id": device.device_id,
                    "branch_id": f"branch-{index % BRANCHES:02d}",
                    "kind": "treadmill",
                    "name": f"Treadmill {device.device_id}",
                    "ping_url": device.ping_url,
                    "heartbeat_period_s": 5,
                }
                for index, device in enumerate(simulator.devices.values())
            ]
            async with httpx.AsyncClient(timeout=30) as client:
                answer = await client.put(
                    f"{replicas.urls[0]}/v1/equipment",
                    json=body,
                    headers={"authorization": f"Bearer {operator}"},
                )
                assert answer.status_code == 200, answer.text
                for item in answer.json():
                    simulator.devices[item["device_id"]].token = item["token"]
                    simulator.devices[item["device_id"]].heartbeat_period_s = 1.0
            # The replica the heartbeats go to learns of the devices through the relay.
            await asyncio.sleep(1.0)
            simulator.start_heartbeats()

            # Steady state with three replicas (leases balanced within a few renewals).
            await asyncio.sleep(3 * PERIOD_S)
            steady = time.time()
            await asyncio.sleep(2 * PERIOD_S)
            before = pinged_by(pings_of(simulator), steady, time.time())
            assert set(before) == set(simulator.devices), "a device nobody pinged"
            twice = {device: agents for device, agents in before.items() if len(agents) != 1}
            assert not twice, f"pinged by more than one replica: {twice}"
            assert {agent for agents in before.values() for agent in agents} == {"replica-0", "replica-1", "replica-2"}
            orphans = {device for device, agents in before.items() if agents == {"replica-0"}}
            assert len(orphans) >= 2

            # One of the killed replica's devices is already faulty when it dies.
            broken = sorted(orphans)[0]
            orphans.discard(broken)
            await simulator.set_mode(broken, "dead")
            auth = {"authorization": f"Bearer {operator}"}
            async with httpx.AsyncClient(timeout=30) as client:
                deadline = time.monotonic() + 4 * PERIOD_S
                opened: list[dict[str, object]] = []
                while not opened and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                    opened = (await client.get(f"{replicas.urls[1]}/v1/faults?open=true", headers=auth)).json()
            assert [row["device_id"] for row in opened] == [broken], opened

            held_by_dead = [shard for shard, holder, _ in await lease_rows(database) if holder == "replica-0"]
            killed = time.time()
            replicas.kill(0)
            taken_after = await wait_for_takeover(database, "replica-0", limit_s=3 * PERIOD_S)
            assert held_by_dead, "the killed replica held no shard"
            assert taken_after is not None, "the killed replica's shards were not taken over"
            assert taken_after < PERIOD_S * 1.2, taken_after

            await asyncio.sleep(PERIOD_S)
            settled = time.time()
            await asyncio.sleep(2 * PERIOD_S)
            pings = pings_of(simulator)
            after = pinged_by(pings, settled, time.time())
            assert set(after) == set(simulator.devices) - {broken}, "a device nobody pings after the takeover"
            twice = {device: agents for device, agents in after.items() if len(agents) != 1}
            assert not twice, f"pinged by more than one replica: {twice}"
            assert all(agents <= {"replica-1", "replica-2"} for agents in after.values())
            assert orphans
            assert all(after[device] != {"replica-0"} for device in orphans)
            # Each orphan's first ping by a survivor came within the spread of its shard
            # being taken (every shard was taken by taken_after), not at its grid phase.
            first = {
                device: min(at for at, agent in pings[device] if at > killed and not agent.endswith("/replica-0"))
                for device in orphans
            }
            late = {device: round(at - killed, 2) for device, at in first.items() if at - killed > taken_after + 0.7}
            assert not late, f"taken over at {taken_after:.2f} s, first pinged only at {late}"

            async with httpx.AsyncClient(timeout=30) as client:
                faults = await client.get(f"{replicas.urls[1]}/v1/faults?open=false&limit=1000", headers=auth)
            assert faults.status_code == 200
            # The broken device's fault, still the one opened under the killed replica and
            # still open; no other.
            assert [(row["fault_id"], row["closed_at"]) for row in faults.json()] == [(opened[0]["fault_id"], None)], [
                (row["device_id"], row["reason"], row["opened_at"]) for row in faults.json()
            ][:10]
    finally:
        if simulator is not None:
            await simulator.stop()
        if replicas is not None:
            replicas.stop()
        databases.drop_all()
