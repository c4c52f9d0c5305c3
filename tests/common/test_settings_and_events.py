from __future__ import annotations

import json
import uuid

import pytest
from pydantic import ValidationError

from common.events.envelope import MalformedEvent
from common.settings import PlatformSettings, weak_secret
from contracts import CATALOG, UserRegistered

STRONG = "vS3q_9pXr2LmT8wZk4NbYc7HdJf6GhQa1Ue5"
BROKER = f"amqps://smartgym:{STRONG}@rabbit:5671/"


def test_production_refuses_local_defaults():
    with pytest.raises(ValidationError) as refused:
        PlatformSettings(environment="production", broker_url="amqp://guest:guest@rabbit:5672/")
    message = str(refused.value)
    assert "guest" in message
    assert "amqps" in message


def test_production_refuses_sqlite():
    settings = PlatformSettings(environment="production", broker_url=BROKER)
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


def test_every_production_secret_clears_the_floor():
    from access.settings import AccessSettings
    from auth.settings import AuthSettings
    from gateway.settings import GatewaySettings

    for weak in ("local-development-only", "change-me-please-change-me-please!", "short", "ab" * 20):
        assert weak_secret("X", weak) is not None, weak
    assert weak_secret("X", STRONG) is None
    # A service that seals nothing needs no sealing secret at all.
    PlatformSettings(environment="production", broker_url=BROKER)
    with pytest.raises(ValidationError) as refused:
        PlatformSettings(environment="production", broker_url="amqps://smartgym:s3cret@rabbit:5671/")
    assert "password is weak" in str(refused.value)
    with pytest.raises(ValidationError, match="amqps"):
        PlatformSettings(environment="production", broker_url=BROKER.replace("amqps", "amqp"))
    PlatformSettings(environment="production", broker_url=BROKER.replace("amqps", "amqp"), broker_allow_plaintext=True)

    sealing = {"biometric_sealing_keys": {"1": STRONG[5:] + "Kx7"}}
    with pytest.raises(ValidationError, match="biometric sealing key 1 is the local default"):
        AuthSettings(environment="production", broker_url=BROKER)
    with pytest.raises(ValidationError) as refused:
        AuthSettings(environment="production", broker_url=BROKER, **sealing)
    for variable in ("SMARTGYM_SIGNING_KEY_SECRET", "SMARTGYM_CARDCHECK_API_KEY"):
        assert variable in str(refused.value)
    with pytest.raises(ValidationError, match="must differ"):
        AuthSettings(
            environment="production",
            broker_url=BROKER,
            key_encryption_secret=STRONG,
            signing_key_secret=STRONG,
            cardcheck_api_key=STRONG[::-1],
            **sealing,
        )
    # The key-encryption secret only opens legacy values in auth: not required there.
    AuthSettings(
        environment="production",
        broker_url=BROKER,
        signing_key_secret=STRONG[::-1],
        cardcheck_api_key=STRONG[3:] + "Zq9",
        **sealing,
    )
    with pytest.raises(ValidationError, match="biometric sealing key 1 is the local default"):
        AccessSettings(environment="production", broker_url=BROKER)
    AccessSettings(environment="production", broker_url=BROKER, **sealing)
    # running seals its partner tokens under the key-encryption secret.
    from running.settings import RunningSettings

    with pytest.raises(ValidationError, match="SMARTGYM_KEY_ENCRYPTION_SECRET"):
        RunningSettings(environment="production", broker_url=BROKER)
    RunningSettings(environment="production", broker_url=BROKER, key_encryption_secret=STRONG)
    from notification.settings import NotificationSettings

    with pytest.raises(ValidationError) as refused:
        NotificationSettings(environment="production", broker_url=BROKER, fcm_service_account_file="/run/fcm.json")
    assert "SMARTGYM_SMS_AUTH_TOKEN" in str(refused.value)
    assert "SMARTGYM_SMS_ENDPOINT" in str(refused.value)
    NotificationSettings(
        environment="production",
        broker_url=BROKER,
        fcm_service_account_file="/run/fcm.json",
        sms_endpoint="https://api.twilio.com",
        sms_auth_token="9f2c4e1a7b3d8f6e0c5a2b9d4e7f1a3c",  # the shape of a Twilio auth token
    )
    with pytest.raises(ValidationError, match="CORS"):
        GatewaySettings(environment="production", broker_url=BROKER, gateway_cors_origins=("*",))
    GatewaySettings(environment="production", broker_url=BROKER, gateway_cors_origins=("https://console.smartgym.kr",))


def test_an_events_trace_context_travels_in_its_envelope_and_bad_ones_are_ignored():
    from common.events.envelope import EventCatalog, envelope_traceparent
    from tests.support.ledger import EntryRecorded

    catalog = EventCatalog()
    catalog.register(EntryRecorded)
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    wire = EntryRecorded(seq=1).to_wire(traceparent=traceparent)
    assert envelope_traceparent(wire) == traceparent
    assert catalog.decode(wire).traceparent == traceparent
    assert b"traceparent" not in EntryRecorded(seq=1).to_wire()  # nothing written while tracing is off
    forged = wire.replace(traceparent.encode(), b"00-xyz\\n-injected")
    assert catalog.decode(forged).traceparent is None
