"""The whole account lifecycle as a client sees it: through the gateway, to auth on a
real loopback socket."""

from __future__ import annotations

import uuid

import pytest

from auth.app import create_app as create_auth
from common.security import Role
from gateway.app import create_app as create_gateway
from gateway.settings import GatewaySettings
from tests.auth.helpers import PASSWORD
from tests.support.apps import FAST_HASHER, asgi_client, serving


@pytest.fixture
async def stack(settings):
    auth_app = create_auth(settings, hasher=FAST_HASHER)
    async with serving(auth_app) as auth_url:
        gateway_settings = GatewaySettings(environment="test", auth_url=auth_url)
        async with asgi_client(create_gateway(gateway_settings)) as gateway:
            yield auth_app, gateway


async def test_account_lifecycle_through_the_gateway(stack):
    auth_app, gateway = stack
    email = f"life{uuid.uuid4().hex[:6]}@example.com"
    created = await gateway.post("/api/auth/signup", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201
    tokens = (await gateway.post("/api/auth/login", json={"email": email, "password": PASSWORD})).json()
    auth = {"authorization": f"Bearer {tokens['access_token']}"}
    assert (await gateway.get("/api/auth/me", headers=auth)).json()["email"] == email

    refreshed = await gateway.post("/api/auth/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    tokens = refreshed.json()
    auth = {"authorization": f"Bearer {tokens['access_token']}"}
    changed = await gateway.post(
        "/api/auth/password", headers=auth, json={"current_password": PASSWORD, "new_password": "my second password"}
    )
    assert changed.status_code == 204
    tokens = (await gateway.post("/api/auth/login", json={"email": email, "password": "my second password"})).json()
    assert (await gateway.post("/api/auth/logout", json={"refresh_token": tokens["refresh_token"]})).status_code == 204
    assert (
        await gateway.post("/api/auth/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    ).status_code == 401

    for _ in range(5):
        await gateway.post("/api/auth/login", json={"email": email, "password": "not my password"})
    locked = await gateway.post("/api/auth/login", json={"email": email, "password": "my second password"})
    assert locked.status_code == 429
    assert "retry-after" in locked.headers

    user_id = uuid.UUID(created.json()["id"])
    trail = await auth_app.state.accounts.audit_trail(subject=str(user_id), action=None, limit=50)
    actions = [entry.action for entry in trail]
    for expected in (
        "account_created",
        "login_succeeded",
        "password_changed",
        "logout",
        "login_failed",
        "login_locked",
    ):
        assert expected in actions
    assert {entry.source_address for entry in trail} == {"127.0.0.1"}  # the address the gateway saw


async def test_device_token_through_the_gateway(stack):
    auth_app, gateway = stack
    email = f"op{uuid.uuid4().hex[:6]}@example.com"
    created = await gateway.post("/api/auth/signup", json={"email": email, "password": PASSWORD})
    await auth_app.state.accounts.assign_roles(
        actor="bootstrap", user_id=uuid.UUID(created.json()["id"]), roles=[Role.OPERATOR], branches=[], source=None
    )
    operator = (await gateway.post("/api/auth/login", json={"email": email, "password": PASSWORD})).json()
    device = (
        await gateway.post(
            "/api/auth/devices",
            json={"name": "kiosk 1", "kind": "kiosk", "branch_id": "b-1"},
            headers={"authorization": f"Bearer {operator['access_token']}"},
        )
    ).json()
    issued = await gateway.post(
        "/api/auth/devices/token", json={"client_id": device["client_id"], "client_secret": device["client_secret"]}
    )
    assert issued.status_code == 200
    who = await gateway.get("/api/auth/me", headers={"authorization": f"Bearer {issued.json()['access_token']}"})
    assert who.status_code == 403  # a device is not a member account
