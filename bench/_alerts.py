"""The alerts path as a steady load, for runs that watch the services over minutes
(``bench/perf_memory.py``).

- **monitoring** pings simulated devices (one simulator process, every device with a
  heartbeat connection, the production 10 s period); every ``crash_every_s`` one device
  crashes and comes back ``RECOVER_S`` later, so faults open, are announced and close;
- **notification** takes equipment-fault events published at ``push_rate`` a second by
  this process, plus monitoring's announcements, and pushes them to the FCM stand-in
  served here.

``verify`` counts what a run must show: every published event pushed exactly once, every
crash announced, and the false alarms (faults of devices that never failed), which are
reported, not hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench._common import ROOT, check_delivered, fail, progress, register_owner_phone, stop_quietly
from bench.notification_push_throughput import BRANCH, faults
from common.events.envelope import OutgoingMessage
from common.events.rabbitmq import RabbitMQBus
from common.migrations import upgrade
from common.observability import Metrics
from common.security import Role
from contracts import CATALOG
from notification.fcm import ServiceAccount
from notification.fcm_sim import FcmSimState
from notification.fcm_sim import create_app as create_fcm
from tests.support import tokens
from tests.support.apps import free_port, serving
from tests.support.infra import PostgresDatabases
from tests.support.processes import clean_env, start, wait_healthy

RECOVER_S = 10.0
PUBLISH_TICK_S = 0.1
OK_GAUGE = 'monitoring_devices{health="ok"}'


@dataclass
class AlertsLoad:
    monitoring_url: str
    control_url: str
    fcm: FcmSimState
    bus: RabbitMQBus
    devices: int
    push_rate: float
    crash_every_s: float
    pids: dict[str, int]
    published: list[str] = field(default_factory=list)
    crashed: dict[str, float] = field(default_factory=dict)  # device -> when it crashed (wall clock)

    async def run(self, seconds: float) -> None:
        """Publish events and crash devices for ``seconds``; the last crashed device is
        back before this returns."""
        await asyncio.gather(self._publish(seconds), self._crash(seconds))

    async def _publish(self, seconds: float) -> None:
        # Paced on a schedule, not by sleeps, so a slow publish does not lower the rate.
        began = time.monotonic()
        owed = 0.0
        for tick in itertools.count(1):
            due = began + tick * PUBLISH_TICK_S
            if due > began + seconds:
                return
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            owed += self.push_rate * PUBLISH_TICK_S
            batch = faults(int(owed))
            owed -= len(batch)
            if batch:
                await self.bus.publish_many([OutgoingMessage.of(event) for event in batch])
                self.published.extend(str(event.fault_id) for event in batch)

    async def _crash(self, seconds: float) -> None:
        if self.crash_every_s <= 0:
            return
        ends = time.monotonic() + seconds
        victims = (f"mem-{index:05d}" for index in itertools.count(0, 7))
        async with httpx.AsyncClient(timeout=30) as client:
            while time.monotonic() + self.crash_every_s + RECOVER_S <= ends:
                await asyncio.sleep(self.crash_every_s)
                device = next(victims)
                crash = await client.post(f"{self.control_url}/devices/{device}/mode", json={"mode": "dead"})
                crash.raise_for_status()
                self.crashed[device] = crash.json()["began"]
                await asyncio.sleep(RECOVER_S)
                back = await client.post(f"{self.control_url}/devices/{device}/mode", json={"mode": "ok"})
                back.raise_for_status()

    async def verify(self, *, drain_s: float = 60.0) -> dict[str, Any]:
        """Waits for the pushes still on their way, then counts; shortfalls fail the run."""
        wanted = set(self.published)
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and not wanted <= self._pushed_fault_ids():
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # a repeat would arrive by now
        pushed = [
            item.message["data"]["fault_id"]
            for item in self.fcm.received
            if item.message.get("data", {}).get("fault_id") in wanted
        ]
        counts = check_delivered("notification pushes", self.published, pushed)
        if counts["repeats"]:
            fail(f"notification: {counts['repeats']} events pushed more than once")
        # Every crash announced by a fault opened after it, and that fault closed once the
        # device was back (the last one came back moments ago: given until the deadline).
        while True:
            faults = await self._faults()
            announced = {
                row["device_id"]
                for row in faults
                if row["device_id"] in self.crashed and _opened(row) >= self.crashed[row["device_id"]] - 1.0
            }
            recovered = {row["device_id"] for row in faults if row["device_id"] in announced and row["closed_at"]}
            if len(recovered) == len(self.crashed) or time.monotonic() >= deadline + 30:
                break
            await asyncio.sleep(1.0)  # fmt: skip
        unannounced = [device for device in self.crashed if device not in announced]
        if unannounced:
            fail(f"monitoring: {len(unannounced)} of {len(self.crashed)} crashes never announced: {unannounced[:5]}")
        unrecovered = [device for device in announced if device not in recovered]
        if unrecovered:
            fail(f"monitoring: {len(unrecovered)} crashed devices came back but their faults stayed open")
        false_alarms = [row for row in faults if row["device_id"] not in self.crashed]
        return {
            "pushes": counts["distinct"],
            "events_published": len(self.published),
            "crashes": len(self.crashed),
            "crashes_announced": len(self.crashed) - len(unannounced),
            "crashes_recovered": len(recovered),
            "false_alarms": len(false_alarms),
            "false_alarm_reasons": sorted({row["reason"][:60] for row in false_alarms})[:3],
        }

    async def _faults(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(
                f"{self.monitoring_url}/v1/faults?open=false&limit=1000",
                # Issued now: a token from the start would have expired in a ten-minute run.
                headers=tokens.bearer(uuid.uuid4(), [Role.OPERATOR]),
            )
            response.raise_for_status()
            faults: list[dict[str, Any]] = response.json()
            return faults

    def _pushed_fault_ids(self) -> set[str]:
        return {item.message.get("data", {}).get("fault_id", "") for item in self.fcm.received}


def _opened(row: dict[str, Any]) -> float:
    return datetime.fromisoformat(row["opened_at"]).timestamp()


@contextlib.asynccontextmanager
async def alerts_load(
    *,
    databases: PostgresDatabases,
    broker_url: str,
    namespace: str,
    scratch: Path,
    devices: int,
    push_rate: float,
    crash_every_s: float,
) -> AsyncIterator[AlertsLoad]:
    """Monitoring, notification and a device simulator, started and healthy, every device
    seen answering; stopped on the way out."""
    monitoring_db = databases.create("bench_alerts_monitoring")
    notification_db = databases.create("bench_alerts_notification")
    upgrade("monitoring", monitoring_db)
    upgrade("notification", notification_db)
    fcm_port, monitoring_port, notification_port, heartbeat_port = (free_port() for _ in range(4))
    control_port = free_port()
    fcm_url = f"http://127.0.0.1:{fcm_port}"
    account = ServiceAccount.ephemeral("smartgym-bench", f"{fcm_url}/token")
    fcm = FcmSimState(project_id=account.project_id, public_key_pem=account.public_key_pem())
    owner = tokens.issuer().issue(str(uuid.uuid4()), [Role.BRANCH_OWNER], [BRANCH])
    bus = RabbitMQBus(broker_url, catalog=CATALOG, metrics=Metrics(), namespace=namespace)
    processes: list[Any] = []
    try:
        async with serving(tokens.jwks_app()) as auth_url, serving(create_fcm(fcm), fcm_port):
            common_env = {
                "SMARTGYM_BROKER_URL": broker_url,
                "SMARTGYM_BUS_NAMESPACE": namespace,
                "SMARTGYM_AUTH_URL": auth_url,
                "SMARTGYM_DATA_DIR": str(scratch),
                "SMARTGYM_LOG_LEVEL": "WARNING",
            }
            services = {
                "notification": (notification_port, clean_env(
                    **common_env,
                    SMARTGYM_NOTIFICATION_DATABASE_URL=notification_db,
                    SMARTGYM_FCM_PROJECT_ID=account.project_id,
                    SMARTGYM_FCM_ENDPOINT=fcm_url,
                    SMARTGYM_FCM_TOKEN_URI=account.token_uri,
                    SMARTGYM_FCM_SERVICE_ACCOUNT_FILE=str(account.to_file(scratch / "fcm.json")),
                )),
                "monitoring": (monitoring_port, clean_env(
                    **common_env,
                    SMARTGYM_MONITORING_DATABASE_URL=monitoring_db,
                    SMARTGYM_MONITORING_HEARTBEAT_HOST="127.0.0.1",
                    SMARTGYM_MONITORING_HEARTBEAT_PORT=str(heartbeat_port),
                    SMARTGYM_MONITORING_EQUIPMENT_NETWORKS='{"*": ["127.1.0.0/16"]}',
                    SMARTGYM_MONITORING_MAX_CONNECTIONS=str(devices + 500),
                )),
            }  # fmt: skip
            pids: dict[str, int] = {}
            for name, (port, env) in services.items():
                log = scratch / f"{name}.log"
                process = start(["serve", name, "--port", str(port)], env=env, cwd=ROOT, log=log)
                processes.append(process)
                pids[name] = process.pid
                await asyncio.to_thread(wait_healthy, f"http://127.0.0.1:{port}", process, log)
            monitoring_url = f"http://127.0.0.1:{monitoring_port}"
            await register_owner_phone(f"http://127.0.0.1:{notification_port}", owner)
            async with httpx.AsyncClient(timeout=30) as client:
                log = scratch / "simulator.log"
                simulator = start(
                    [
                        "simulate", "equipment",
                        "--devices", str(devices),
                        "--prefix", "mem",
                        "--port", str(free_port()),
                        "--monitoring", monitoring_url,
                        "--heartbeat", f"127.0.0.1:{heartbeat_port}",
                        "--ramp", "5",
                        "--branch", BRANCH,
                        "--control-port", str(control_port),
                    ],
                    env=clean_env(SMARTGYM_SIMULATOR_TOKEN=tokens.issuer().issue(str(uuid.uuid4()), [Role.OPERATOR])),
                    cwd=ROOT,
                    log=log,
                )  # fmt: skip
                processes.append(simulator)
                progress(f"alerts: {devices} simulated devices registering")
                await _every_device_answering(client, monitoring_url, simulator, log, devices)
            await bus.start()
            yield AlertsLoad(
                monitoring_url=monitoring_url,
                control_url=f"http://127.0.0.1:{control_port}",
                fcm=fcm,
                bus=bus,
                devices=devices,
                push_rate=push_rate,
                crash_every_s=crash_every_s,
                pids=pids,
            )
    finally:
        await bus.close()
        for process in reversed(processes):
            stop_quietly(process)


async def _every_device_answering(
    client: httpx.AsyncClient, monitoring_url: str, simulator: Any, log: Path, devices: int
) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if simulator.poll() is not None:
            raise SystemExit(f"the device simulator stopped: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            metrics = (await client.get(f"{monitoring_url}/metrics")).text
            if any(row == f"{OK_GAUGE} {float(devices)}" for row in metrics.splitlines()):
                return
        await asyncio.sleep(1.0)
    fail(f"alerts: not every one of {devices} devices seen answering within 180 s")
