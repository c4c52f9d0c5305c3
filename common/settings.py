"""Typed platform settings read from ``SMARTGYM_*`` environment variables.

One object describes how a process reaches its database, the broker and the token issuer.
It refuses unsafe defaults outside local development, so a production pod cannot start
with the developer's guest credentials or the embedded SQLite files by accident.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import AmqpDsn, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url

from common.loops import EventLoopChoice

SERVICE_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,40}$"
# One broker node as ``host:port`` (a DNS name, an IPv4 address or a bracketed IPv6 one).
_BROKER_ADDRESS = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\]):\d{1,5}$")
_PER_SERVICE_DATABASE_URL = re.compile(r"^SMARTGYM_([A-Z][A-Z0-9_]{0,40})_DATABASE_URL$")

LOCAL_KEY_SECRET = "local-development-only"  # noqa: S105 - refused outside local/test

# The floor every production secret must clear: long enough, and not a word repeated or a
# keyboard walk (estimated from the characters' spread, which a random token passes with
# room to spare: 43 URL-safe characters from secrets.token_urlsafe(32) carry ~200 bits).
MIN_SECRET_LENGTH = 32
MIN_SECRET_BITS = 128.0


def estimated_bits(value: str) -> float:
    """Shannon entropy of ``value``'s own characters times its length: an upper bound on
    what it can hold, so a low figure proves a secret weak (a high one proves nothing)."""
    if not value:
        return 0.0
    counts = Counter(value)
    per_char = -sum(count / len(value) * math.log2(count / len(value)) for count in counts.values())
    return per_char * len(value)


def weak_secret(
    variable: str, value: str, *, min_length: int = MIN_SECRET_LENGTH, min_bits: float = MIN_SECRET_BITS
) -> str | None:
    """Why ``value`` may not be a production secret (None when it may). Partners' keys
    have their own formats (a Twilio auth token is 32 hex digits): they pass lower floors."""
    lowered = value.lower()
    if value == LOCAL_KEY_SECRET or any(marker in lowered for marker in ("local", "change", "example", "default")):
        return f"{variable} is a local or placeholder value"
    if len(value) < min_length:
        return f"{variable} is shorter than {min_length} characters"
    if estimated_bits(value) < min_bits:
        return f"{variable} is too predictable (under {min_bits:.0f} bits)"
    return None


class PlatformSettings(BaseSettings):
    """Settings shared by every service process."""

    model_config = SettingsConfigDict(env_prefix="SMARTGYM_", extra="ignore", frozen=True)

    environment: Literal["local", "test", "production"] = Field(
        default="local",
        description=(
            "local, test or production; production refuses unsafe defaults (default secrets, guest broker"
            " account, SQLite without single box)."
        ),
    )
    single_box: bool = Field(
        default=False,
        description=(
            "Production on one machine: `smartgym up` with SQLite and the in-process bus "
            "(parked events kept on disk). Without it production needs a broker and PostgreSQL."
        ),
    )
    data_dir: Path = Field(
        default=Path("var"),
        description=(
            "Directory of the embedded mode's SQLite files, face model pack, facemodel socket, caches and"
            " parked events."
        ),
    )
    log_level: str = Field(default="INFO", description="Root log level (DEBUG, INFO, WARNING, ERROR).")
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="json: one JSON object per line; text: readable lines; auto: text in local, json elsewhere.",
    )

    event_loop: EventLoopChoice = Field(
        default="auto",
        description=(
            "The event loop of `smartgym serve`, `up` and `simulate equipment`: uvloop (libuv; far less CPU per socket"
            " operation), asyncio (the standard library's), or auto: uvloop when installed."
        ),
    )

    broker_url: AmqpDsn | None = Field(
        default=None, description="AMQP URL; unset means the in-process bus (embedded mode)."
    )
    # Not a list of URLs: the credentials, virtual host and TLS options are one secret
    # (the URL); the nodes are plain configuration that a chart can render from values.
    broker_addresses: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description=(
            "Every node of a RabbitMQ cluster as host:port, comma-separated; clients start at the first and move"
            " to the next when a node goes. Credentials, virtual host and TLS come from SMARTGYM_BROKER_URL,"
            " whose own host:port is then not used. Unset: the URL's node only."
        ),
    )
    broker_reconnect_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Seconds between two attempts to reach a broker node after a connection was lost.",
    )
    broker_allow_plaintext: bool = Field(
        default=False,
        description=(
            "Production accepts an amqp:// broker URL (no TLS); only for broker traffic that never leaves "
            "an encrypted network. Otherwise production wants amqps://."
        ),
    )
    bus_namespace: str = Field(
        default="smartgym",
        pattern=r"^[a-z][a-z0-9_.-]{0,40}$",
        description="Prefix of every exchange and queue, so several installations share a broker.",
    )
    bus_prefetch: int = Field(
        default=256, ge=1, le=5000, description="RabbitMQ: unacknowledged messages a consumer may hold."
    )
    bus_batch_size: int = Field(
        default=100, ge=1, le=1000, description="RabbitMQ: events a consumer applies in one database transaction."
    )
    bus_batch_linger_ms: float = Field(
        default=2.0,
        ge=0,
        le=100,
        description=(
            "RabbitMQ: a consumer that finds fewer events waiting than a batch waits this long for more"
            " (one transaction for a burst, not one per event)."
        ),
    )
    bus_consumer_workers: int = Field(
        default=4, ge=1, le=64, description="RabbitMQ: concurrent handler tasks per consuming service."
    )
    bus_max_attempts: int = Field(
        default=5, ge=1, le=50, description="Attempts of a failing handler before its message is parked."
    )
    bus_retry_delays_ms: tuple[int, ...] = Field(
        default=(200, 1_000, 5_000), description="Delays between handler attempts, in milliseconds (the last repeats)."
    )
    bus_delivery_limit: int = Field(
        default=20, ge=1, description="RabbitMQ quorum queues: redeliveries before the broker dead-letters a message."
    )

    outbox_batch_size: int = Field(
        default=500, ge=1, le=10_000, description="Outbox rows the relay publishes per round."
    )
    outbox_poll_interval_s: float = Field(
        default=0.5, gt=0, description="Seconds between outbox polls when no commit woke the relay."
    )
    outbox_idle_poll_max_s: float = Field(
        default=4.0,
        gt=0,
        description=(
            "Longest wait, seconds, between outbox polls that keep finding nothing: each empty "
            "poll doubles the wait from the poll interval, and a commit in this process wakes "
            "the relay at once. Rows another process wrote wait at most this long."
        ),
    )
    inbox_retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description=(
            "Days a consumed event's id is kept to recognise a redelivery of it. A parked "
            "event that occurred longer ago than this less a day (less half of it, if that "
            "is shorter) stays parked when an operator replays every parked event, and is "
            "replayed by name only when asked to anyway: if an earlier copy of it was "
            "applied, it would be applied a second time. The operations service's value "
            "decides."
        ),
    )

    # A per-service URL wins; otherwise the template (``{service}`` is replaced);
    # otherwise an SQLite file under data_dir (embedded mode).
    database_url_template: str | None = Field(
        default=None,
        description=(
            "Database URL for every service, `{service}` replaced by its name (e.g. "
            "postgresql+psycopg://u:p@db/smartgym_{service}); a per-service URL wins."
        ),
    )
    # Per service, by name; ``SMARTGYM_<SERVICE>_DATABASE_URL`` variables land here too, so
    # a new service needs no field of its own in the kernel.
    database_urls: dict[str, str] = Field(
        default_factory=dict,
        description=(
            'Per-service database URLs as JSON ({"auth": "postgresql+psycopg://\u2026"}); '
            "SMARTGYM_<SERVICE>_DATABASE_URL variables land here too. Unset: SQLite under "
            "SMARTGYM_DATA_DIR."
        ),
    )

    jwt_issuer: str = Field(
        default="smartgym-auth", description="`iss` of the access tokens auth signs and every service checks."
    )
    jwt_audience: str = Field(default="smartgym", description="`aud` of the access tokens.")
    # Entry passes (the member's rotating QR code): signed by auth, checked offline by access.
    entry_pass_audience: str = Field(
        default="smartgym-entry",
        description="`aud` of entry passes (the member's rotating QR code), checked offline by access.",
    )
    entry_pass_ttl_s: int = Field(default=60, ge=10, le=60, description="Lifetime of an entry pass, seconds.")
    jwt_access_ttl_s: int = Field(default=900, ge=30, le=86_400, description="Lifetime of an access token, seconds.")
    jwks_min_refresh_interval_s: float = Field(
        default=30.0,
        ge=0,
        description="Least seconds between two fetches of auth's JWKS (an unknown key id triggers one).",
    )
    auth_url: str = Field(
        default="http://127.0.0.1:8001", description="auth's base URL, where services fetch the JWKS."
    )
    key_encryption_secret: SecretStr = Field(
        default=SecretStr(LOCAL_KEY_SECRET),
        description=(
            "Seals face vectors at rest in auth and access (only those two read it, and check it in "
            "production); auth's signing keys have their own SMARTGYM_SIGNING_KEY_SECRET."
        ),
    )

    tracing_enabled: bool | None = Field(
        default=None,
        description=(
            "OpenTelemetry tracing. Unset: on when a broker is configured (not embedded mode) and an OTLP"
            " endpoint is known (SMARTGYM_TRACING_ENDPOINT or OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT); off otherwise."
        ),
    )
    tracing_exporter: Literal["otlp-http", "otlp-grpc"] = Field(
        default="otlp-http", description="How spans leave the process: OTLP over HTTP (protobuf) or gRPC."
    )
    tracing_endpoint: str | None = Field(
        default=None,
        description=(
            "OTLP collector endpoint (http://collector:4318/v1/traces for otlp-http, http://collector:4317 for"
            " otlp-grpc); unset: the exporter's OTEL_EXPORTER_OTLP_* variables or its default."
        ),
    )
    tracing_sample_ratio: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Share of new traces recorded (a request that arrives traced keeps its caller's decision).",
    )

    http_timeout_s: float = Field(
        default=5.0, gt=0, description="Default timeout of service-to-service HTTP calls, seconds."
    )
    breaker_fail_max: int = Field(default=5, ge=1, description="Failures in a row that open a circuit breaker.")
    breaker_reset_timeout_s: float = Field(
        default=10.0, gt=0, description="Seconds an open breaker waits before letting a trial call through."
    )

    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest request body a service accepts (413 beyond)."
    )

    @field_validator("broker_addresses", mode="before")
    @classmethod
    def _split_broker_addresses(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("broker_addresses")
    @classmethod
    def _check_broker_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            port = address.rsplit(":", 1)[-1]
            if not _BROKER_ADDRESS.match(address) or not 0 < int(port) < 65536:
                raise ValueError(f"broker address {address!r} is not host:port")
        if len(set(value)) != len(value):
            raise ValueError("a broker address is listed twice")
        return value

    @model_validator(mode="before")
    @classmethod
    def _gather_per_service_database_urls(cls, data: Any) -> Any:
        # ``auth_database_url=...`` as a constructor argument means what the variable
        # SMARTGYM_AUTH_DATABASE_URL means; without this it would be silently ignored.
        if not isinstance(data, dict):
            return data
        named = {key: value for key, value in data.items() if key.endswith("_database_url") and value}
        if not named:
            return data
        rest = {key: value for key, value in data.items() if key not in named}
        urls = dict(rest.get("database_urls") or {})
        for key, value in named.items():
            urls[key.removesuffix("_database_url")] = value
        return {**rest, "database_urls": urls}

    @model_validator(mode="after")
    def _refuse_unsafe_production_defaults(self) -> Self:
        if self.environment != "production":
            return self
        problems = self.production_problems()
        if problems:
            raise ValueError("unsafe production settings: " + "; ".join(problems))
        return self

    @model_validator(mode="after")
    def _shared_broker_unless_single_box(self) -> Self:
        """Replicas on several machines share events only through a broker; one box may
        run everything in one process instead, when the operator says so."""
        if self.environment == "production" and self.broker_url is None and not self.single_box:
            raise ValueError(
                "unsafe production settings: SMARTGYM_BROKER_URL is unset (the in-process bus "
                "serves one process: set SMARTGYM_SINGLE_BOX=true to run everything with `smartgym up`)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            _PerServiceDatabaseUrls(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    def production_problems(self) -> list[str]:
        """What makes these settings unsafe in production; a service's settings add its own."""
        problems: list[str] = []
        # An unset broker is refused apart, unless the operator runs a single box.
        if self.broker_url is not None:
            if self.broker_url.username == "guest":
                problems.append("SMARTGYM_BROKER_URL uses the broker's guest account")
            password = self.broker_url.password or ""
            if weak_secret("the broker password", password, min_length=16, min_bits=64):
                problems.append("SMARTGYM_BROKER_URL's password is weak or a placeholder")
            if self.broker_url.scheme != "amqps" and not self.broker_allow_plaintext:
                problems.append(
                    "SMARTGYM_BROKER_URL is not amqps:// (set SMARTGYM_BROKER_ALLOW_PLAINTEXT=true only if "
                    "the network below encrypts it)"
                )
        return problems

    def key_encryption_problems(self) -> list[str]:
        """For the services that keep something sealed under this secret (running's
        partner tokens); auth and access only open legacy values with it."""
        reason = weak_secret("SMARTGYM_KEY_ENCRYPTION_SECRET", self.key_encryption_secret.get_secret_value())
        return [reason] if reason else []

    @property
    def log_json(self) -> bool:
        if self.log_format == "auto":
            return self.environment != "local"
        return self.log_format == "json"

    @property
    def embedded(self) -> bool:
        return self.broker_url is None

    @property
    def tracing_on(self) -> bool:
        if self.tracing_enabled is not None:
            return self.tracing_enabled
        endpoint_known = self.tracing_endpoint is not None or any(
            os.environ.get(name) for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        )
        return not self.embedded and endpoint_known

    def broker_urls(self) -> list[str]:
        """One AMQP URL per broker node, in the order clients try them: the URL itself, or
        its credentials, virtual host and options on each of ``broker_addresses``; the
        reconnect interval is added unless the URL sets its own."""
        if self.broker_url is None:
            return []
        parts = urlsplit(str(self.broker_url))
        # The user and password exactly as written (still percent-encoded), host dropped.
        userinfo, at, hostport = parts.netloc.rpartition("@")
        query = parts.query
        if "reconnect_interval=" not in query:
            query = "&".join(
                part for part in (query, f"reconnect_interval={self.broker_reconnect_interval_s:g}") if part
            )
        nodes = self.broker_addresses or (hostport,)
        return [urlunsplit((parts.scheme, f"{userinfo}{at}{node}", parts.path, query, "")) for node in nodes]

    @classmethod
    def of(cls, settings: PlatformSettings) -> Self:
        """``settings`` as this service's settings: the same platform values, plus the
        service's own fields (from the environment, or their defaults)."""
        return settings if isinstance(settings, cls) else cls(**settings.model_dump())

    def database_url(self, service: str) -> str:
        """The async SQLAlchemy URL of ``service``'s own database."""
        if not re.fullmatch(SERVICE_NAME_PATTERN, service):
            raise ValueError(f"not a service name: {service!r}")
        explicit = self.database_urls.get(service)
        if explicit:
            url = explicit
        elif self.database_url_template:
            url = self.database_url_template.replace("{service}", service)
        else:
            url = f"sqlite+aiosqlite:///{(self.data_dir / f'{service}.db').as_posix()}"
        make_url(url)  # fail early on a malformed URL
        if self.environment == "production" and url.startswith("sqlite") and not self.single_box:
            raise ValueError(
                f"{service}: SQLite is for embedded mode, set a PostgreSQL URL (or SMARTGYM_SINGLE_BOX=true)"
            )
        return url


class _PerServiceDatabaseUrls(PydanticBaseSettingsSource):
    """``SMARTGYM_<SERVICE>_DATABASE_URL`` variables gathered into ``database_urls``: the
    documented per-service variables keep working while the kernel names no service.
    ``SMARTGYM_DATABASE_URLS`` (JSON) and constructor arguments win over them, key by key."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found = {
            match.group(1).lower(): value
            for key, value in os.environ.items()
            if (match := _PER_SERVICE_DATABASE_URL.match(key)) and value
        }
        return {"database_urls": found} if found else {}
