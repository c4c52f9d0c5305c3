"""auth's account slice on SQLite (embedded mode): sign-up, login, JWKS, bad input."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import create_engine, text

from auth.app import create_app
from common.db import sync_url
from common.migrations import upgrade
from common.settings import PlatformSettings
from contracts import UserRegistered
from tests.support.apps import FAST_HASHER, asgi_client


@pytest.fixture
def settings(tmp_path):
    settings = PlatformSettings(environment="test", data_dir=tmp_path, max_body_bytes=4096)
    upgrade("auth", settings.database_url("auth"))
    return settings


@pytest.fixture
async def client(settings):
    async with asgi_client(create_app(settings, hasher=FAST_HASHER)) as client:
        yield client


def outbox_rows(settings) -> list[tuple[str, str]]:
    engine = create_engine(sync_url(settings.database_url("auth")))
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT routing_key, body FROM outbox")).all()
    engine.dispose()
    return [(row[0], row[1]) for row in rows]


async def test_signup_login_me_and_event_in_the_outbox(client, settings):
    created = await client.post("/signup", json={"email": "Kim@Example.com", "password": "long enough pw"})
    assert created.status_code == 201
    user_id = created.json()["id"]
    login = await client.post("/login", json={"email": "kim@example.com", "password": "long enough pw"})
    assert login.status_code == 200
    token = login.json()["access_token"]
    me = await client.get("/me", headers={"authorization": f"Bearer {token}"})
    assert me.json() == {
        "id": user_id,
        "email": "kim@example.com",
        "phone": None,
        "roles": ["customer"],
        "branches": [],
        "identity_verified_at": None,
    }
    [(routing_key, body)] = outbox_rows(settings)
    assert routing_key == UserRegistered.routing_key()
    assert user_id in body


async def test_the_request_id_becomes_the_events_correlation_id(client, settings):
    response = await client.post(
        "/signup",
        json={"email": "c@example.com", "password": "long enough pw"},
        headers={"x-request-id": "kiosk-7.signup-1"},
    )
    assert response.status_code == 201
    [(_routing_key, body)] = outbox_rows(settings)
    assert json.loads(body)["correlation_id"] == "kiosk-7.signup-1"


async def test_jwks_publishes_the_signing_key(client):
    document = (await client.get("/.well-known/jwks.json")).json()
    [key] = document["keys"]
    assert key["kty"] == "RSA"
    assert key["alg"] == "RS256"
    assert "d" not in key  # never the private part


async def test_duplicate_email_is_a_conflict_and_writes_no_event(client, settings):
    body = {"email": "dup@example.com", "password": "long enough pw"}
    assert (await client.post("/signup", json=body)).status_code == 201
    second = await client.post("/signup", json=body)
    assert second.status_code == 409
    assert len(outbox_rows(settings)) == 1


async def test_wrong_password_and_unknown_user_look_the_same(client):
    await client.post("/signup", json={"email": "a@example.com", "password": "long enough pw"})
    wrong = await client.post("/login", json={"email": "a@example.com", "password": "nope nope nope"})
    unknown = await client.post("/login", json={"email": "b@example.com", "password": "nope nope nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


@pytest.mark.parametrize(
    ("content", "headers", "expected"),
    [
        (b'{"email": "a@example.com", "password": ', {"content-type": "application/json"}, 422),
        (b'{"email": 5, "password": ["x"]}', {"content-type": "application/json"}, 422),
        (
            b'{"email": "a@example.com", "password": "long enough pw", "roles": ["operator"]}',
            {"content-type": "application/json"},
            422,
        ),
        (b'{"email": "not-an-email", "password": "long enough pw"}', {"content-type": "application/json"}, 422),
        (b"x" * 10_000, {"content-type": "application/json"}, 413),
        (b"email=a@example.com", {"content-type": "application/x-www-form-urlencoded"}, 422),
    ],
    ids=["malformed-json", "wrong-types", "unknown-field", "bad-email", "oversized", "wrong-content-type"],
)
async def test_bad_input_gets_a_4xx_with_a_reason(client, content, headers, expected):
    response = await client.post("/signup", content=content, headers=headers)
    assert response.status_code == expected
    assert response.json()["detail"]


async def test_oversized_body_without_content_length_is_cut_off(client):
    async def chunks():
        for _ in range(10):
            yield b"x" * 1000

    response = await client.post("/signup", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text


async def test_me_without_or_with_bad_token_is_401(client):
    assert (await client.get("/me")).status_code == 401
    response = await client.get("/me", headers={"authorization": "Bearer garbage"})
    assert response.status_code == 401
    assert response.json()["detail"] == "malformed token"


async def test_request_id_is_kept_or_made(client):
    kept = await client.get("/healthz", headers={"x-request-id": "kiosk-42.abc"})
    assert kept.headers["x-request-id"] == "kiosk-42.abc"
    made = await client.get("/healthz", headers={"x-request-id": "bad id\nwith newline"})
    assert made.headers["x-request-id"] != "bad id\nwith newline"
    assert uuid.UUID(made.headers["x-request-id"])


async def test_health_readiness_and_metrics(client):
    assert (await client.get("/healthz")).json()["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"]["ok"] is True
    await client.post("/signup", json={"email": "m@example.com", "password": "long enough pw"})
    metrics = (await client.get("/metrics")).text
    sample = 'smartgym_http_request_duration_seconds_count{method="POST",route="/signup",service="auth",status="201"}'
    assert sample in metrics
