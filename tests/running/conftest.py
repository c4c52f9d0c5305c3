from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect

from common.events.envelope import Event
from common.migrations import upgrade
from common.security import Role
from contracts import (
    FriendRequestAccepted,
    OutingEnded,
    OutingInvited,
    OutingStarted,
    RaceFinished,
    RunFinished,
    RunStarted,
    StepGoalReached,
    StepRankChanged,
)
from running.app import create_app
from running.settings import RunningSettings
from running.synthetic import generate
from tests.support import tokens
from tests.support.apps import asgi_client
from tests.support.events import recording_bus

NEW_EVENTS = (FriendRequestAccepted, OutingInvited, OutingStarted, OutingEnded, StepGoalReached)


@dataclass(frozen=True)
class Member:
    user_id: uuid.UUID
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


def member() -> Member:
    user_id = uuid.uuid4()
    return Member(user_id, tokens.issuer().issue(str(user_id), [Role.CUSTOMER], []))


def track_points(seed: int = 1, seconds: int = 280, start_time: float | None = None) -> list[dict[str, Any]]:
    """A recorded track whose device times fit a run started now: at most five minutes
    back (older points are refused) and not past now + 30 s (future points are)."""
    import time

    track = generate(seed, seconds=seconds, start_time=start_time or time.time() - min(seconds, 290))
    return [
        {"t": s.t, "lat": s.lat, "lon": s.lon, "acc": s.accuracy, "alt": round(s.altitude, 1), "hr": s.heart_rate}
        for s in track.samples
    ]


@dataclass
class Running:
    app: FastAPI
    client: httpx.AsyncClient
    settings: RunningSettings
    events: list[Event] = field(default_factory=list)

    @property
    def live_url(self) -> str:
        return f"ws://127.0.0.1:{self.app.state.live_port}"

    def socket(self, path: str, who: Member | None = None) -> Any:
        headers = who.headers if who else None
        return connect(self.live_url + path, additional_headers=headers, open_timeout=5)

    async def befriend(self, a: Member, b: Member) -> None:
        assert (await self.client.post(f"/v1/friends/{b.user_id}", headers=a.headers)).json() == {"status": "requested"}
        response = await self.client.post(f"/v1/friends/{a.user_id}/accept", headers=b.headers)
        assert response.status_code == 204, response.text

    def of(self, kind: type[Event]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


async def receive(socket: ClientConnection, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next message of ``kind`` (others are skipped)."""
    import asyncio

    async def wait() -> dict[str, Any]:
        while True:
            message = json.loads(await socket.recv())
            if message["type"] == kind:
                return message

    return await asyncio.wait_for(wait(), timeout)


def running_settings(tmp_path, **overrides: Any) -> RunningSettings:
    values: dict[str, Any] = {
        "environment": "test",
        "data_dir": tmp_path,
        "running_live_host": "127.0.0.1",
        "running_live_port": 0,
        "running_flush_interval_s": 0.5,
        "running_stats_interval_s": 0,
        "running_outing_snapshot_s": 0.3,
    }
    return RunningSettings(**{**values, **overrides})


@pytest.fixture
def open_running(tmp_path) -> Callable[..., AbstractAsyncContextManager[Running]]:
    @asynccontextmanager
    async def opened(**overrides: Any) -> AsyncIterator[Running]:
        settings = running_settings(tmp_path, **overrides)
        upgrade("running", settings.database_url("running"))
        async with recording_bus(RunStarted, RunFinished, RaceFinished, StepRankChanged, *NEW_EVENTS) as recording:
            app = create_app(settings, bus=recording.bus, metrics=recording.metrics, keys=tokens.key_cache())
            async with asgi_client(app) as client:
                yield Running(app, client, settings, recording.recorded)

    return opened


@pytest.fixture
async def running(open_running):
    async with open_running() as opened:
        yield opened
