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
from contracts import PayoutStatusChanged, TaskJudgedV2, TaskSubmitted
from helper.app import create_app
from helper.settings import HelperSettings
from tests.support import tokens
from tests.support.apps import asgi_client
from tests.support.events import recording_bus
from tests.support.waiting import eventually

BRANCH = "gangnam"


@dataclass
class HelperApp:
    client: httpx.AsyncClient
    settings: HelperSettings
    events: list[Event]
    owner: dict[str, str] = field(default_factory=dict)
    app: FastAPI | None = None
    helper_id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def helper(self) -> dict[str, str]:
        return tokens.bearer(self.helper_id, [Role.HELPER])

    def of(self, kind: type[Event]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    async def task_type(self, code: str = "wash", *, expected_photos: int = 1, daily_limit: int = 50) -> None:
        body = {
            "category": "laundry",
            "title": code.title(),
            "reward_krw": 3000,
            "expected_photos": expected_photos,
            "daily_limit": daily_limit,
        }
        response = await self.client.put(f"/v1/branches/{BRANCH}/task-types/{code}", json=body, headers=self.owner)
        assert response.status_code == 200, response.text

    async def bind(self, helper_id: uuid.UUID | None = None) -> None:
        response = await self.client.put(
            f"/v1/branches/{BRANCH}/helpers/{helper_id or self.helper_id}", headers=self.owner
        )
        assert response.status_code == 204, response.text

    async def submit(
        self, *photos: bytes, task_type: str = "wash", key: str | None = None, names: tuple[str, ...] = ()
    ) -> httpx.Response:
        files = [
            ("photos", (names[index] if index < len(names) else f"p{index}.jpg", data, "application/octet-stream"))
            for index, data in enumerate(photos)
        ]
        form = {"branch_id": BRANCH, "task_type": task_type, "client_key": key or uuid.uuid4().hex}
        return await self.client.post("/v1/tasks", data=form, files=files, headers=self.helper)

    async def verdict(self, task_id: str) -> TaskJudgedV2:
        await eventually(lambda: any(str(e.task_id) == task_id for e in self.of(TaskJudgedV2)), timeout=10)
        return next(e for e in self.of(TaskJudgedV2) if str(e.task_id) == task_id)


@pytest.fixture
def open_helper(tmp_path) -> Callable[..., AbstractAsyncContextManager[HelperApp]]:
    @asynccontextmanager
    async def opened(**overrides: Any) -> AsyncIterator[HelperApp]:
        settings = HelperSettings(environment="test", data_dir=tmp_path, outbox_poll_interval_s=0.05, **overrides)
        upgrade("helper", settings.database_url("helper"))
        async with recording_bus(TaskSubmitted, TaskJudgedV2, PayoutStatusChanged) as recording:
            app = create_app(settings, bus=recording.bus, metrics=recording.metrics, keys=tokens.key_cache())
            async with asgi_client(app) as client:
                owner = tokens.bearer(uuid.uuid4(), [Role.BRANCH_OWNER], (BRANCH,))
                yield HelperApp(client, settings, recording.recorded, owner=owner, app=app)

    return opened


@pytest.fixture
async def helper_app(open_helper) -> AsyncIterator[HelperApp]:
    async with open_helper() as opened:
        await opened.task_type()
        await opened.bind()
        yield opened
