from __future__ import annotations

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
from notification.app import create_app
from notification.fcm import ServiceAccount
from notification.fcm_sim import FcmSimState
from notification.fcm_sim import create_app as create_fcm_app
from notification.settings import NotificationSettings
from tests.support import tokens
from tests.support.apps import asgi_client, serving
from tests.support.events import recording_bus

BRANCH = "gangnam"


@dataclass
class FakeFcm:
    url: str
    state: FcmSimState
    account: ServiceAccount


@pytest.fixture
async def fcm(tmp_path) -> AsyncIterator[FakeFcm]:
    """The local FCM stand-in on a real loopback port, checking our signatures."""
    from tests.support.apps import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    account = ServiceAccount.ephemeral("smartgym-test", f"{url}/token")
    account.to_file(tmp_path / "service-account.json")
    state = FcmSimState(project_id=account.project_id, public_key_pem=account.public_key_pem())
    async with serving(create_fcm_app(state), port):
        yield FakeFcm(url, state, account)


@dataclass
class Person:
    user_id: uuid.UUID
    headers: dict[str, str]


def person(role: Role, branches: tuple[str, ...] = (), *, also: tuple[Role, ...] = ()) -> Person:
    user_id = uuid.uuid4()
    token = tokens.issuer().issue(str(user_id), [role, *also], list(branches))
    return Person(user_id, {"authorization": f"Bearer {token}"})


@dataclass
class Notifications:
    app: FastAPI
    client: httpx.AsyncClient
    bus: InProcessBus

    async def announce(self, *events: Event) -> None:
        await self.bus.publish_many([OutgoingMessage.of(event) for event in events])

    async def with_phone(self, who: Person, token: str | None = None, **preferences: Any) -> str:
        token = token or f"fcm-token-{uuid.uuid4().hex}"
        response = await self.client.put(
            "/me/push-tokens", json={"token": token, "platform": "android"}, headers=who.headers
        )
        assert response.status_code == 204, response.text
        if preferences:
            response = await self.client.put("/me/preferences", json=preferences, headers=who.headers)
            assert response.status_code == 200, response.text
        return token

    async def inbox(self, who: Person) -> list[dict[str, Any]]:
        response = await self.client.get("/inbox", headers=who.headers)
        assert response.status_code == 200, response.text
        messages: list[dict[str, Any]] = response.json()["messages"]
        return messages


@pytest.fixture
def open_notifications(tmp_path, fcm) -> Callable[..., AbstractAsyncContextManager[Notifications]]:
    @asynccontextmanager
    async def opened(**overrides: Any) -> AsyncIterator[Notifications]:
        values = {
            "environment": "test",
            "data_dir": tmp_path,
            "fcm_project_id": fcm.account.project_id,
            "fcm_endpoint": fcm.url,
            "fcm_token_uri": fcm.account.token_uri,
            "fcm_service_account_file": tmp_path / "service-account.json",
            "notification_retry_base_s": 0.05,
            "notification_poll_interval_s": 0.05,
        }
        settings = NotificationSettings(**{**values, **overrides})
        upgrade("notification", settings.database_url("notification"))
        async with recording_bus() as recording:
            app = create_app(settings, bus=recording.bus, metrics=recording.metrics, keys=tokens.key_cache())
            async with asgi_client(app) as client:
                yield Notifications(app, client, recording.bus)

    return opened


@pytest.fixture
async def notifications(open_notifications):
    async with open_notifications() as opened:
        yield opened
