"""The runtime of one service: database, bus, outbox relay, consumers and token verifier.

``build_kernel`` wires them from settings; the service's app factory hands the kernel to
:func:`common.api.create_service_app`, whose lifespan starts and stops it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import MetaData

from common.db import Database, KernelTables, kernel_tables_of
from common.events.bus import EventBus, Subscriptions
from common.events.envelope import Event, EventCatalog, RevokesCredentials
from common.events.inprocess import InProcessBus
from common.events.outbox import OutboxRelay, UnitOfWork, bind_idempotent
from common.observability import Metrics
from common.security import JwksCache, TokenVerifier
from common.settings import PlatformSettings

log = logging.getLogger(__name__)


def make_bus(
    settings: PlatformSettings, metrics: Metrics, catalog: EventCatalog, *, parking_lot: Path | None = None
) -> EventBus:
    """RabbitMQ when a broker URL is configured, the in-process bus otherwise (its parked
    messages kept in the ``parking_lot`` file when given)."""
    if settings.broker_url is None:
        return InProcessBus(
            catalog=catalog,
            metrics=metrics,
            max_attempts=settings.bus_max_attempts,
            retry_delays_ms=settings.bus_retry_delays_ms,
            parking_lot=parking_lot,
        )
    from common.events.rabbitmq import RabbitMQBus  # aio-pika is only imported when used

    return RabbitMQBus(
        str(settings.broker_url),
        catalog=catalog,
        metrics=metrics,
        namespace=settings.bus_namespace,
        prefetch=settings.bus_prefetch,
        batch_size=settings.bus_batch_size,
        workers=settings.bus_consumer_workers,
        max_attempts=settings.bus_max_attempts,
        retry_delays_ms=settings.bus_retry_delays_ms,
        delivery_limit=settings.bus_delivery_limit,
    )


def remote_jwks(settings: PlatformSettings, *, remember_in: Path | None = None) -> JwksCache:
    """Keys fetched from auth's JWKS endpoint, refreshed at a bounded rate.

    With ``remember_in``, the last document fetched is kept in that file and used when auth
    cannot be reached, so a service restarted during an outage still checks tokens (public
    keys only: nothing secret is written).
    """
    url = settings.auth_url.rstrip("/") + "/.well-known/jwks.json"

    async def fetch() -> Mapping[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=settings.http_timeout_s) as client:
                response = await client.get(url)
                response.raise_for_status()
                document: Mapping[str, Any] = response.json()
        except (httpx.HTTPError, ValueError):
            remembered = await asyncio.to_thread(_read_json, remember_in) if remember_in else None
            if remembered is None:
                raise
            log.warning("auth unreachable; using the public keys remembered in %s", remember_in)
            return remembered
        if remember_in is not None:
            await asyncio.to_thread(_write_json_atomically, remember_in, document)
        return document

    return JwksCache(fetch, min_refresh_interval_s=settings.jwks_min_refresh_interval_s)


def _read_json(path: Path) -> Mapping[str, Any] | None:
    if not path.exists():
        return None
    document: Mapping[str, Any] = json.loads(path.read_text())
    return document


def _write_json_atomically(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(document))
    staging.replace(path)  # a crash never leaves half a file


@dataclass
class ServiceKernel:
    """What one service runs on. ``database``/``bus`` are None for a stateless service
    (the gateway): it neither stores nor publishes."""

    name: str
    settings: PlatformSettings
    metrics: Metrics
    verifier: TokenVerifier
    keys: JwksCache
    database: Database | None = None
    tables: KernelTables | None = None
    bus: EventBus | None = None
    subscriptions: Subscriptions | None = None
    owns_bus: bool = True
    # A service that must keep working offline (access at the gate) stays ready while the
    # broker is away: its outbox keeps the events until the broker is back.
    ready_without_bus: bool = False
    # The events this service can decode (a stateless service needs none).
    catalog: EventCatalog = field(default_factory=EventCatalog)
    relay: OutboxRelay | None = field(default=None, init=False)
    _started: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.database is not None and self.tables is not None and self.bus is not None:
            self.relay = OutboxRelay(
                service=self.name,
                database=self.database,
                tables=self.tables,
                bus=self.bus,
                metrics=self.metrics,
                batch_size=self.settings.outbox_batch_size,
                poll_interval_s=self.settings.outbox_poll_interval_s,
            )

    @property
    def db(self) -> Database:
        if self.database is None:
            raise RuntimeError(f"{self.name} has no database")
        return self.database

    def unit_of_work(self) -> UnitOfWork:
        if self.database is None or self.tables is None or self.relay is None:
            raise RuntimeError(f"{self.name} has no database and bus for a unit of work")
        return UnitOfWork(self.database, self.tables, self.relay.wake)

    async def start(self) -> None:
        if self._started:
            return
        if self.bus is not None and self.owns_bus:
            await self.bus.start()
        if self.bus is not None and self.subscriptions is not None and self.subscriptions.items:
            database, tables, relay = self.database, self.tables, self.relay
            if database is None or tables is None or relay is None:
                raise RuntimeError(f"{self.name} consumes events but has no database for its inbox")
            await self.bus.subscribe(
                bind_idempotent(self.subscriptions, database, tables, self.metrics, on_commit=relay.wake)
            )
        revocations = [kind for kind in self.catalog if issubclass(kind, RevokesCredentials)]
        if self.bus is not None and revocations:
            await self.bus.broadcast(revocations, self._on_revocation)
        if self.relay is not None:
            self.relay.start()
        self._started = True
        log.info("service started", extra={"service": self.name})

    async def _on_revocation(self, event: Event) -> None:
        # Every replica refuses the subject's tokens at once instead of waiting out their
        # lifetime.
        if isinstance(event, RevokesCredentials):
            subject, for_s = event.revoked_subject()
            self.verifier.revoke_subject(subject, for_s=for_s)

    async def stop(self) -> None:
        """Drain consumers, flush the outbox, close connections: in that order."""
        if not self._started:
            return
        self._started = False
        if self.bus is not None and self.subscriptions is not None and self.subscriptions.items:
            await self.bus.stop_consuming(self.name)
        if self.relay is not None:
            await self.relay.stop()
        if self.bus is not None and self.owns_bus:
            await self.bus.close()
        if self.database is not None:
            await self.database.dispose()
        log.info("service stopped", extra={"service": self.name})

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {}
        if self.database is not None:
            try:
                await asyncio.wait_for(self.database.ping(), timeout=2.0)
                checks["database"] = {"ok": True}
            except Exception as exc:
                checks["database"] = {"ok": False, "error": type(exc).__name__}
        if self.bus is not None:
            checks["bus"] = self.bus.health()
        required = [check for name, check in checks.items() if not (name == "bus" and self.ready_without_bus)]
        return all(check.get("ok") for check in required), checks


def build_kernel(
    name: str,
    settings: PlatformSettings,
    *,
    metadata: MetaData | None,
    subscriptions: Subscriptions | None = None,
    bus: EventBus | None = None,
    metrics: Metrics | None = None,
    keys: JwksCache | None = None,
    catalog: EventCatalog | None = None,
    ready_without_bus: bool = False,
) -> ServiceKernel:
    """Wire one service from settings; pass ``bus``/``metrics`` to share them in one process."""
    metrics = metrics or Metrics()
    keys = keys or remote_jwks(settings)
    verifier = TokenVerifier(keys, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    if metadata is None:
        return ServiceKernel(name=name, settings=settings, metrics=metrics, verifier=verifier, keys=keys)
    if catalog is None:
        raise TypeError(f"{name} has a database and a bus: pass the event catalog it speaks")
    owns_bus = bus is None
    if bus is None:
        bus = make_bus(settings, metrics, catalog)
    return ServiceKernel(
        name=name,
        settings=settings,
        metrics=metrics,
        catalog=catalog,
        verifier=verifier,
        keys=keys,
        ready_without_bus=ready_without_bus,
        database=Database(settings.database_url(name)),
        tables=kernel_tables_of(metadata),
        bus=bus,
        subscriptions=subscriptions,
        owns_bus=owns_bus,
    )
