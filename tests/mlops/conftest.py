from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from common.events.envelope import Event, OutgoingMessage
from common.events.inprocess import InProcessBus
from common.migrations import upgrade
from common.security import Role
from contracts import ModelDeployed, PackFile, TrainingRequested
from mlops import registry
from mlops.app import create_app
from mlops.settings import MlopsSettings
from tests.support import tokens
from tests.support.apps import asgi_client
from tests.support.events import recording_bus

ISSUER = tokens.issuer(ttl=__import__("datetime").timedelta(hours=6))


def bearer(role: Role = Role.OPERATOR, subject: str | None = None) -> dict[str, str]:
    return {"authorization": "Bearer " + ISSUER.issue(subject or str(uuid.uuid4()), [role], [])}


OPERATOR = bearer()


@dataclass
class MlopsApp:
    app: FastAPI
    client: httpx.AsyncClient
    settings: MlopsSettings
    events: list[Event]
    bus: InProcessBus

    def of(self, kind: type[Event]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    async def publish(self, *events: Event) -> None:
        await self.bus.publish_many([OutgoingMessage.of(event) for event in events])

    async def register(self, version: str, *, family: str = "task_judge", status: str = "verified", **extra: Any):
        """A version in the registry (files named, not stored: deployment never reads them)."""
        data = f"{family}-{version}".encode()
        file = PackFile(
            name="model.onnx",
            key=f"models/{family}/{version}/model.onnx",
            sha256=hashlib.sha256(data).hexdigest(),
            size_bytes=len(data),
        )
        async with self.app.state.kernel.db.transaction() as session:
            row = await registry.register(
                session, family=family, version=version, files=[file], code_version="test", **extra
            )
            row.status = status
        return row


@pytest.fixture
def open_mlops(tmp_path) -> Callable[..., AbstractAsyncContextManager[MlopsApp]]:
    @asynccontextmanager
    async def opened(**overrides: Any) -> AsyncIterator[MlopsApp]:
        values = {
            "environment": "test",
            "data_dir": tmp_path,
            "outbox_poll_interval_s": 0.05,
            "mlops_embedded_worker": False,
        }
        values.update(overrides)
        settings = MlopsSettings(**values)
        upgrade("mlops", settings.database_url("mlops"))
        async with recording_bus(ModelDeployed, TrainingRequested) as recording:
            app = create_app(settings, bus=recording.bus, metrics=recording.metrics, keys=tokens.key_cache())
            async with asgi_client(app) as client:
                yield MlopsApp(app, client, settings, recording.recorded, recording.bus)

    return opened


@pytest.fixture
async def mlops_app(open_mlops) -> AsyncIterator[MlopsApp]:
    async with open_mlops() as opened:
        yield opened
