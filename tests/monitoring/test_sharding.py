"""Three real monitoring processes share the devices by branch through leases: every
device is pinged by exactly one of them; after one is killed (``kill -9``, its leases
simply stop being renewed) the others take its shards within a ping period, every device
is pinged again by exactly one survivor, and nobody is announced faulty. Heartbeats all
go to one replica, which relays them to the holders (otherwise the holders would find
them overdue)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from pathlib import Path

import httpx
import psycopg

from bench._common import jwks_app
from common.migrations import upgrade
from common.security import Role
from monitoring.simulator import DeviceSimulator
from tests.support import tokens
from tests.support.apps import free_port, serving
from tests.support.infra import PG_ADMIN_URL, RABBITMQ_URL, PostgresDatabases, require_postgres, require_rabbitmq
from tests.support.processes import clean_env, start, stop, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
PERIOD_S = 2.0
DEVICES = 60
BRANCHES = 12
SHARDS = 16


def pinged_by(simulator: DeviceSimulator, since: float, until: float) -> dict[str, set[str]]:
    agents: dict[str, set[str]] = defaultdict(set)
    for device in simulator.devices.values():
        for at, agent in device.pings:
            if since <= at < until:
                agents[device.device_id].add(agent.rsplit("/", 1)[-1])
    return agents


async def test_three_replicas_share_devices_and_take_over_a_killed_one(tmp_path: Path) -> None:
    require_postgres()
    require_rabbitmq()
    databases = PostgresDatabases(PG_ADMIN_URL)
    database = databases.create("monshard")
    upgrade("monitoring", database)
    heartbeat_ports = [free_port() for _ in range(3)]
    api_ports = [free_port() for _ in range(3)]
    operator = tokens.issuer().issue(str(uuid.uuid4()), [Role.OPERATOR], [])
    # Every heartbeat goes to the last replica, the one never killed.
    simulator = DeviceSimulator.numbered(
        DEVICES, free_port(), prefix="shard", heartbeat_to=("127.0.0.1", heartbeat_ports[2])
    )
    processes = []
    try:
        async with serving(jwks_app()) as auth_url:
            await simulator.start_listening()
            for number in range(3):
                env = clean_env(
                    SMARTGYM_BROKER_URL=RABBITMQ_URL,
                    SMARTGYM_BUS_NAMESPACE=f"shard{uuid.uuid4().hex[:8]}",
                    SMARTGYM_AUTH_URL=auth_url,
                    SMARTGYM_DATA_DIR=str(tmp_path),
                    SMARTGYM_LOG_LEVEL="INFO",
                    SMARTGYM_MONITORING_DATABASE_URL=database,
                    SMARTGYM_MONITORING_HEARTBEAT_HOST="127.0.0.1",
                    SMARTGYM_MONITORING_HEARTBEAT_PORT=str(heartbeat_ports[number]),
                    SMARTGYM_MONITORING_EQUIPMENT_NETWORKS='{"*": ["127.1.0.0/16"]}',
                    SMARTGYM_MONITORING_PING_INTERVAL_S=str(PERIOD_S),
                    SMARTGYM_MONITORING_PING_TIMEOUT_S="0.5",
                    SMARTGYM_MONITORING_SHARDS=str(SHARDS),
                    SMARTGYM_MONITORING_REPLICA_ID=f"replica-{number}",
                )
                log = tmp_path / f"monitoring-{number}.log"
                process = start(["serve", "monitoring", "--port", str(api_ports[number])], env=env, cwd=ROOT, log=log)
                processes.append(process)
            for number, process in enumerate(processes):
                wait_healthy(f"http://127.0.0.1:{api_ports[number]}", process, tmp_path / f"monitoring-{number}.log")
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
                    f"http://127.0.0.1:{api_ports[0]}/v1/equipment",
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
            before = pinged_by(simulator, steady, time.time())
            assert set(before) == set(simulator.devices), "a device nobody pinged"
            twice = {device: agents for device, agents in before.items() if len(agents) != 1}
            assert not twice, f"pinged by more than one replica: {twice}"
            assert {agent for agents in before.values() for agent in agents} == {"replica-0", "replica-1", "replica-2"}
            orphans = {device for device, agents in before.items() if agents == {"replica-0"}}

            processes[0].kill()  # kill -9: no goodbye, its leases just stop being renewed
            killed = time.time()
            processes[0].wait()
            held_by_dead = await _leases_of(database, "replica-0")
            taken_after = None
            while time.time() - killed < 3 * PERIOD_S:
                if not await _leases_of(database, "replica-0", live=True):
                    free = await _free_leases(database)
                    if not free:
                        taken_after = time.time() - killed
                        break
                await asyncio.sleep(0.05)
            assert held_by_dead, "the killed replica held no shard"
            assert taken_after is not None, "the killed replica's shards were not taken over"
            assert taken_after < PERIOD_S * 1.2, taken_after

            await asyncio.sleep(PERIOD_S)
            settled = time.time()
            await asyncio.sleep(2 * PERIOD_S)
            after = pinged_by(simulator, settled, time.time())
            assert set(after) == set(simulator.devices), "a device nobody pings after the takeover"
            twice = {device: agents for device, agents in after.items() if len(agents) != 1}
            assert not twice, f"pinged by more than one replica: {twice}"
            assert all(agents <= {"replica-1", "replica-2"} for agents in after.values())
            assert orphans
            assert all(after[device] != {"replica-0"} for device in orphans)

            async with httpx.AsyncClient(timeout=30) as client:
                faults = await client.get(
                    f"http://127.0.0.1:{api_ports[1]}/v1/faults?open=false&limit=1000",
                    headers={"authorization": f"Bearer {operator}"},
                )
            assert faults.status_code == 200
            assert faults.json() == [], [(row["device_id"], row["reason"], row["opened_at"]) for row in faults.json()][
                :10
            ]
    finally:
        await simulator.stop()
        for process in processes:
            stop(process)
        databases.drop_all()


async def _leases_of(database: str, holder: str, *, live: bool = False) -> list[int]:
    query = "SELECT shard FROM shard_leases WHERE holder = %s" + (" AND expires_at > now()" if live else "")
    async with await psycopg.AsyncConnection.connect(database.replace("+psycopg", "")) as connection:
        rows = await (await connection.execute(query, (holder,))).fetchall()
    return [row[0] for row in rows]


async def _free_leases(database: str) -> list[int]:
    query = "SELECT shard FROM shard_leases WHERE holder IS NULL OR expires_at <= now() OR holder = 'replica-0'"
    async with await psycopg.AsyncConnection.connect(database.replace("+psycopg", "")) as connection:
        rows = await (await connection.execute(query)).fetchall()
    return [row[0] for row in rows]
