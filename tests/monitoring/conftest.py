from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from common.events.envelope import Event
from common.migrations import upgrade
from common.security import Role
from contracts import EquipmentFault, EquipmentFaultEscalated, EquipmentFaultWithdrawn, EquipmentRecovered
from monitoring.app import create_app
from monitoring.settings import MonitoringSettings
from monitoring.simulator import DeviceSimulator
from tests.support import tokens
from tests.support.apps import asgi_client, free_port
from tests.support.events import recording_bus

BRANCH = "gangnam"


def staff(role: Role = Role.OPERATOR, branches: tuple[str, ...] = ()) -> dict[str, str]:
    token = tokens.issuer().issue(str(uuid.uuid4()), [role], list(branches))
    return {"authorization": f"Bearer {token}"}


@dataclass
class Monitor:
    app: FastAPI
    client: httpx.AsyncClient
    settings: MonitoringSettings
    events: list[Event] = field(default_factory=list)

    @property
    def heartbeat_port(self) -> int:
        port: int = self.app.state.heartbeat_port
        return port

    def of(self, kind: type[Event]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    async def register(self, simulator: DeviceSimulator, **fields: Any) -> None:
        body = [
            {
                "device_id": device.device_id,
                "branch_id": BRANCH,
                "kind": "treadmill",
                "name": f"Treadmill {device.device_id}",
                "ping_url": device.ping_url,
                "heartbeat_period_s": None,
                **fields,
            }
            for device in simulator.devices.values()
        ]
        for start in range(0, len(body), 1000):
            response = await self.client.put("/v1/equipment", json=body[start : start + 1000], headers=staff())
            assert response.status_code == 200, response.text
            for item in response.json():
                simulator.devices[item["device_id"]].token = item["token"]


# Faster than production (10 s / 1 s / 0.25 s) so a test takes seconds; the same code paths.
FAST = {
    "monitoring_ping_interval_s": 1.0,
    "monitoring_ping_timeout_s": 0.3,
    "monitoring_confirm_after_s": 0.05,
    "monitoring_sweep_interval_s": 0.1,
    "monitoring_heartbeat_host": "127.0.0.1",
    "monitoring_heartbeat_port": 0,
    # The simulator's devices live on 127.1.x.y: declared, as a site declares its equipment LAN.
    "monitoring_equipment_networks": {"*": ["127.1.0.0/16"]},
}


@pytest.fixture
def open_monitor(tmp_path) -> Callable[..., AbstractAsyncContextManager[Monitor]]:
    @asynccontextmanager
    async def opened(**overrides: Any) -> AsyncIterator[Monitor]:
        settings = MonitoringSettings(environment="test", data_dir=tmp_path, **{**FAST, **overrides})
        upgrade("monitoring", settings.database_url("monitoring"))
        recorded = (EquipmentFault, EquipmentRecovered, EquipmentFaultEscalated, EquipmentFaultWithdrawn)
        async with recording_bus(*recorded) as recording:
            app = create_app(settings, bus=recording.bus, metrics=recording.metrics, keys=tokens.key_cache())
            async with asgi_client(app) as client:
                yield Monitor(app, client, settings, recording.recorded)

    return opened


@pytest.fixture
async def monitor(open_monitor):
    async with open_monitor() as opened:
        yield opened


@pytest.fixture
def simulator_port() -> int:
    return free_port()
