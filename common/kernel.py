"""The runtime of one service: database, bus, outbox relay, consumers and token verifier.

``build_kernel`` wires them from settings; the service's app factory hands the kernel to
:func:`common.api.create_service_app`, whose lifespan starts and stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import MetaData

from common.collector import settle_garbage_collector
from common.db import Database, KernelTables, kernel_tables_of
from common.events.bus import EventBus, Subscriptions
from common.events.envelope import Event, EventCatalog
from common.events.inbox import bind_idempotent, sweep_processed_events
from common.events.inprocess import InProcessBus
from common.events.outbox import OutboxRelay, UnitOfWork
from common.events.revocations import TokensRevoked
from common.observability import Metrics
from common.periodic import Periodic
from common.security import JwksCache, TokenVerifier
from common.settings import PlatformSettings

log = logging.getLogger(__name__)

# How often a consuming service forgets consumed events past the inbox's retention: an
# index probe when nothing is due.
INBOX_SWEEP_INTERVAL_S = 600.0
# The first a minute after start (not during it): a service restarted often still sweeps.
INBOX_FIRST_SWEEP_S = 60.0


def make_bus(
    settings: PlatformSettings, metrics: Metrics, catalog: EventCatalog, *, parking_lot: Path | None = None
) -> EventBus:
    """RabbitMQ when a broker URL is configured, the in-process bus otherwise (its parked
    messages kept in the ``parking_lot`` file when given)."""
    catalog.register(TokensRevoked)  # every replica follows revocations, whatever its catalog
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
        settings.broker_urls(),
        catalog=catalog,
        metrics=metrics,
        namespace=settings.bus_namespace,
        prefetch=settings.bus_prefetch,
        batch_size=settings.bus_batch_size,
        batch_linger_s=settings.bus_batch_linger_ms / 1000,
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


# Where a replica that starts late learns the revocations still in force.
RevocationSource = Callable[[], Awaitable[Sequence[TokensRevoked]]]


def remote_revocations(settings: PlatformSettings) -> RevocationSource:
    """The revocations in force, from auth's ``GET /revocations``."""
    url = settings.auth_url.rstrip("/") + "/revocations"

    async def fetch() -> Sequence[TokensRevoked]:
        async with httpx.AsyncClient(timeout=settings.http_timeout_s) as client:
            response = await client.get(url)
            response.raise_for_status()
            items = response.json()
        if not isinstance(items, list):
            raise ValueError("revocations: expected a JSON list")
        return [TokensRevoked.model_validate(item) for item in items]

    return fetch


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
    # None: this service does not follow revocations (it checks no member tokens).
    revocation_source: RevocationSource | None = None
    revocation_retry_s: float = 2.0
    relay: OutboxRelay | None = field(default=None, init=False)
    _inbox_sweep: Periodic | None = field(default=None, init=False)
    _started: bool = field(default=False, init=False)
    _catch_up: asyncio.Task[None] | None = field(default=None, init=False)

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
                idle_poll_max_s=self.settings.outbox_idle_poll_max_s,
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
            self._inbox_sweep = Periodic(
                f"{self.name}-inbox-sweep", INBOX_SWEEP_INTERVAL_S, self.sweep_inbox, first_after_s=INBOX_FIRST_SWEEP_S
            )
            await self._inbox_sweep.start()
        if self.bus is not None:
            # Follow the bus first, then read what is already in force: a revocation
            # published in between is seen twice (harmless), never missed.
            await self.bus.broadcast([TokensRevoked], self._on_tokens_revoked)
        if self.revocation_source is not None and not await self._catch_up_on_revocations():
            self._catch_up = asyncio.create_task(self._keep_catching_up(), name=f"{self.name}-revocations")
        if self.relay is not None:
            self.relay.start()
        settle_garbage_collector()
        self._started = True
        log.info("service started", extra={"service": self.name})

    async def sweep_inbox(self) -> int:
        """Forget consumed events older than the inbox's retention; how many ids went."""
        if self.database is None or self.tables is None:
            return 0
        swept = await sweep_processed_events(
            database=self.database,
            tables=self.tables,
            retention=timedelta(days=self.settings.inbox_retention_days),
            on_deleted=self.metrics.retention_swept.labels(self.name, "processed_events").inc,
        )
        if swept:
            log.info("inbox swept", extra={"service": self.name, "count": swept})
        return swept

    async def _on_tokens_revoked(self, event: Event) -> None:
        if isinstance(event, TokensRevoked):
            self.apply_revocation(event)

    def apply_revocation(self, revocation: TokensRevoked) -> None:
        self.verifier.revocations.add(
            subject=revocation.subject,
            session_id=revocation.session_id,
            issued_before=revocation.issued_before.timestamp(),
            expires_at=revocation.expires_at.timestamp(),
        )

    async def _catch_up_on_revocations(self) -> bool:
        if self.revocation_source is None:
            return True
        try:
            revocations = await self.revocation_source()
        except Exception as exc:
            log.warning("revocations in force not fetched yet (%s); retrying", type(exc).__name__)
            return False
        for revocation in revocations:
            self.apply_revocation(revocation)
        log.info("revocations in force applied", extra={"service": self.name, "count": len(revocations)})
        return True

    async def _keep_catching_up(self) -> None:
        # The issuer may still be starting; until it answers, the bus alone keeps us current.
        delay = self.revocation_retry_s
        while True:
            await asyncio.sleep(delay)
            if await self._catch_up_on_revocations():
                return
            delay = min(delay * 2, 30.0)

    async def stop(self) -> None:
        """Drain consumers, flush the outbox, close connections: in that order."""
        if not self._started:
            return
        self._started = False
        if self._catch_up is not None:
            self._catch_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._catch_up
            self._catch_up = None
        if self._inbox_sweep is not None:
            await self._inbox_sweep.stop()
            self._inbox_sweep = None
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
    revocations: RevocationSource | None = None,
) -> ServiceKernel:
    """Wire one service from settings; pass ``bus``/``metrics`` to share them in one process.

    Without ``metadata`` (no database) the service gets a bus only when it gives a
    ``catalog``: it can then follow broadcasts and publish, not consume subscriptions.

    ``revocations`` says where the revocations in force are read at start (auth reads its
    own table); by default a service with a bus asks auth over HTTP."""
    metrics = metrics or Metrics()
    keys = keys or remote_jwks(settings)
    verifier = TokenVerifier(keys, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    if metadata is None and catalog is None:
        return ServiceKernel(name=name, settings=settings, metrics=metrics, verifier=verifier, keys=keys)
    if catalog is None:
        raise TypeError(f"{name} has a database and a bus: pass the event catalog it speaks")
    owns_bus = bus is None
    if bus is None:
        bus = make_bus(settings, metrics, catalog)
    if metadata is None:
        # Events but no database (a model-serving sidecar): it hears broadcasts and
        # publishes straight to the bus; with no inbox it may consume no subscriptions.
        return ServiceKernel(
            name=name,
            settings=settings,
            metrics=metrics,
            catalog=catalog,
            verifier=verifier,
            keys=keys,
            ready_without_bus=ready_without_bus,
            bus=bus,
            owns_bus=owns_bus,
            revocation_source=revocations,
        )
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
        revocation_source=revocations or remote_revocations(settings),
    )
