from __future__ import annotations

import json
import uuid

import pytest
from pydantic import ValidationError

from common.events.envelope import MalformedEvent
from common.settings import PlatformSettings
from contracts import CATALOG, UserRegistered


def test_production_refuses_local_defaults():
    with pytest.raises(ValidationError) as refused:
        PlatformSettings(environment="production", broker_url="amqp://guest:guest@rabbit:5672/")
    message = str(refused.value)
    assert "SMARTGYM_KEY_ENCRYPTION_SECRET" in message
    assert "guest" in message


def test_production_refuses_sqlite():
    settings = PlatformSettings(
        environment="production",
        broker_url="amqp://smartgym:s3cret@rabbit:5672/",
        key_encryption_secret="a-real-secret-from-the-vault",
    )
    with pytest.raises(ValueError, match="SQLite"):
        settings.database_url("auth")


def test_database_url_resolution(tmp_path, monkeypatch):
    assert PlatformSettings(data_dir=tmp_path).database_url("auth") == f"sqlite+aiosqlite:///{tmp_path}/auth.db"
    monkeypatch.setenv("SMARTGYM_DATABASE_URL_TEMPLATE", "postgresql+psycopg://db/smartgym_{service}")
    monkeypatch.setenv("SMARTGYM_AUTH_DATABASE_URL", "postgresql+psycopg://authdb/auth")
    settings = PlatformSettings()
    assert settings.database_url("auth") == "postgresql+psycopg://authdb/auth"
    assert settings.database_url("notification") == "postgresql+psycopg://db/smartgym_notification"
    # A service the kernel has never heard of is just a name: nothing to add in common/.
    monkeypatch.setenv("SMARTGYM_KITCHEN_DATABASE_URL", "postgresql+psycopg://k/kitchen")
    assert PlatformSettings().database_url("kitchen") == "postgresql+psycopg://k/kitchen"
    monkeypatch.setenv("SMARTGYM_DATABASE_URLS", '{"kitchen": "postgresql+psycopg://json/kitchen"}')
    assert PlatformSettings().database_url("kitchen") == "postgresql+psycopg://json/kitchen"
    assert PlatformSettings().database_url("auth") == "postgresql+psycopg://authdb/auth"
    assert PlatformSettings(kitchen_database_url="postgresql+psycopg://arg/k").database_url("kitchen") == (
        "postgresql+psycopg://arg/k"
    )
    with pytest.raises(ValueError, match="not a service name"):
        settings.database_url("../etc")


def test_event_round_trip_and_envelope_shape():
    event = UserRegistered(user_id=uuid.uuid4(), email="a@example.com", roles=("customer",))
    wire = json.loads(event.to_wire())
    assert set(wire) == {"event_id", "event_name", "event_version", "occurred_at", "correlation_id", "data"}
    assert wire["event_name"] == "UserRegistered"
    assert wire["event_version"] == 1
    assert CATALOG.decode(event.to_wire()) == event


def test_unknown_fields_are_tolerated_for_forward_compatibility():
    event = UserRegistered(user_id=uuid.uuid4(), email="a@example.com", roles=())
    wire = json.loads(event.to_wire())
    wire["data"]["nickname"] = "added in a later minor change"
    assert CATALOG.decode(json.dumps(wire).encode()) == event


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x00\xff", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"event_name": "UserRegistered", "data": {}}', "event_name/event_version"),
        (b'{"event_name": "UserRegistered", "event_version": 9, "data": {}}', "unknown event"),
        (b'{"event_name": "UserRegistered", "event_version": 1, "data": {"email": "x"}}', "invalid UserRegistered"),
        (b'{"event_name": "UserRegistered", "event_version": true, "data": {}}', "event_name/event_version"),
        (b" " * 300_000, "exceeds"),
    ],
)
def test_malformed_events_are_refused_with_a_reason(body, reason):
    with pytest.raises(MalformedEvent, match=reason):
        CATALOG.decode(body)
