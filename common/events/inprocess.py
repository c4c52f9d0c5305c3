"""The in-process bus of the embedded single-process mode.

``publish_many`` returns only after every subscribed handler has run (or the message was
parked), so the outbox marks an event published only once it took effect: a crash before
that republishes it from the outbox on restart, and the idempotent consumers absorb the
repeat. The delivery state therefore lives in the databases already: the producer's
outbox (not yet marked = not yet delivered everywhere) and each consumer's processed-event
inbox (committed with the effect). Retries follow the same attempt budget as on RabbitMQ.

There is no broker to hold parked messages: with ``parking_lot`` (a file) they are
written to an SQLite file before the outbox can mark their event published, so a restart
loses none; without it (tests) they are kept in memory. Either way they are logged.

An operator replays a parked message (:mod:`common.events.parking`): it leaves the list at
once, so a second replay finds nothing, is delivered again to the one service that parked
it, and leaves the file only after that delivery ended (taken, or parked anew), so a
crash in between shows it again rather than losing it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.context import bind_correlation_id, reset_correlation_id, sanitize_correlation_id
from common.events.bus import PublishError, Subscription, Subscriptions
from common.events.envelope import Event, EventCatalog, MalformedEvent, OutgoingMessage
from common.observability import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParkedMessage:
    service: str
    routing_key: str
    body: bytes
    reason: str
    id: int = 0  # the parking-lot file's row id, else a counter of this process
    parked_at: float = 0.0  # seconds since the epoch


class InProcessBus:
    def __init__(
        self,
        *,
        catalog: EventCatalog,
        metrics: Metrics,
        max_attempts: int = 5,
        retry_delays_ms: Sequence[int] = (200, 1_000, 5_000),
        parking_lot: Path | None = None,
    ) -> None:
        self._catalog = catalog
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._retry_delays_ms = tuple(retry_delays_ms) or (0,)
        self._subscriptions: dict[str, Subscriptions] = {}
        # What each service ever subscribed to in this process: like a durable queue, a
        # stopped subscriber still "has" its queue, so publishing to it must wait.
        self._declared: dict[str, frozenset[str]] = {}
        self._stopping: set[str] = set()
        self.parked: list[ParkedMessage] = []
        self._parking_lot = parking_lot
        self._broadcasts: list[tuple[tuple[type[Event], ...], Callable[[Event], Awaitable[None]]]] = []
        self._parked_count = 0
        self._replays: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self._parking_lot is not None:
            self.parked = await asyncio.to_thread(_load_parked, self._parking_lot)
            if self.parked:
                log.warning(
                    "parked events from earlier runs are waiting",
                    extra={"parked": len(self.parked), "parking_lot": str(self._parking_lot)},
                )

    async def close(self) -> None:
        # A replay in flight stays in the parking-lot file until it ends: cancelling it
        # loses nothing.
        for task in list(self._replays):
            task.cancel()
        await asyncio.gather(*self._replays, return_exceptions=True)
        self._subscriptions.clear()

    def health(self) -> dict[str, Any]:
        return {"ok": True, "kind": "in-process", "parked": len(self.parked)}

    async def subscribe(self, subscriptions: Subscriptions) -> None:
        if subscriptions.service in self._subscriptions:
            raise RuntimeError(f"{subscriptions.service} already subscribed")
        self._subscriptions[subscriptions.service] = subscriptions
        self._declared[subscriptions.service] = frozenset(subscriptions.routing_keys)
        self._stopping.discard(subscriptions.service)

    async def broadcast(
        self,
        event_types: Sequence[type[Event]],
        handler: Callable[[Event], Awaitable[None]],
        *,
        on_connected: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._broadcasts.append((tuple(event_types), handler))
        if on_connected is not None:
            await on_connected()  # in one process the "connection" never drops

    async def stop_consuming(self, service: str) -> None:
        self._stopping.add(service)
        self._subscriptions.pop(service, None)

    async def publish_many(self, messages: Sequence[OutgoingMessage]) -> None:
        started = time.perf_counter()
        for message in messages:
            absent = [
                service
                for service, keys in self._declared.items()
                if message.routing_key in keys and service not in self._subscriptions
            ]
            if absent:
                # The outbox keeps the event until the subscriber is back.
                raise PublishError(f"subscriber {absent[0]} of {message.routing_key} is not consuming")
            self._metrics.published.labels(event=message.routing_key).inc()
            await self._deliver(message)
        self._metrics.publish_seconds.observe(time.perf_counter() - started)

    async def _deliver(self, message: OutgoingMessage) -> None:
        token = bind_correlation_id(sanitize_correlation_id(message.correlation_id))
        try:
            try:
                event = self._catalog.decode(message.body).in_trace(message.traceparent)
            except MalformedEvent as exc:
                self._metrics.consumed.labels(event=message.routing_key, outcome="malformed").inc()
                for service in self._subscribers_of(message.routing_key):
                    await self._park(service, message, f"malformed: {exc.reason}")
                return
            for event_types, handler in self._broadcasts:
                if isinstance(event, event_types):
                    try:
                        await handler(event)
                    except Exception:
                        log.exception("broadcast handler failed", extra={"routing_key": message.routing_key})
            for service, subscriptions in list(self._subscriptions.items()):
                for subscription in subscriptions.handlers_for(event):
                    await self._run_with_retries(service, subscription, message, event)
        finally:
            reset_correlation_id(token)

    async def _run_with_retries(
        self, service: str, subscription: Subscription, message: OutgoingMessage, event: Any
    ) -> None:
        for attempt in range(1, self._max_attempts + 1):
            try:
                await subscription.handler(event)
            except Exception as exc:
                self._metrics.consumed.labels(event=message.routing_key, outcome="failed").inc()
                if attempt == self._max_attempts or service in self._stopping:
                    await self._park(service, message, f"{type(exc).__name__}: {exc}"[:500])
                    return
                delay_ms = self._retry_delays_ms[min(attempt, len(self._retry_delays_ms)) - 1]
                log.warning("handler failed, retrying", exc_info=True, extra={"service": service})
                await asyncio.sleep(delay_ms / 1000)
            else:
                self._metrics.consumed.labels(event=message.routing_key, outcome="ok").inc()
                return

    def _subscribers_of(self, routing_key: str) -> list[str]:
        return [
            service
            for service, subscriptions in self._subscriptions.items()
            if routing_key in subscriptions.routing_keys
        ]

    # -- the parking lot, for operators (common.events.parking) --------------------------

    def services(self) -> list[str]:
        """Every service that subscribed in this process (consuming or stopped)."""
        return sorted(self._declared)

    def is_consuming(self, service: str) -> bool:
        return service in self._subscriptions

    def take_parked(self, *, service: str, parked_id: int) -> ParkedMessage:
        """Remove one parked message from the list (not yet from the file), for a replay;
        LookupError if it is not (or no longer) there."""
        for index, parked in enumerate(self.parked):
            if parked.id == parked_id and parked.service == service:
                if service not in self._subscriptions:
                    raise RuntimeError(f"{service} is not consuming here")
                return self.parked.pop(index)
        raise LookupError(f"no parked message {parked_id} of {service}")

    def replay(self, parked: ParkedMessage) -> None:
        """Deliver a message taken by :meth:`take_parked` to its service again, in the
        background with the usual retries (a handler may take seconds to fail again)."""
        task = asyncio.get_running_loop().create_task(self._replay(parked), name=f"bus-replay:{parked.id}")
        self._replays.add(task)
        task.add_done_callback(self._replays.discard)

    async def _replay(self, parked: ParkedMessage) -> None:
        message = OutgoingMessage(_event_id_of(parked.body), parked.routing_key, parked.body, None)
        token = bind_correlation_id(sanitize_correlation_id(None))
        try:
            try:
                event = self._catalog.decode(message.body)
            except MalformedEvent as exc:
                await self._park(parked.service, message, f"malformed: {exc.reason}")
            else:
                subscriptions = self._subscriptions.get(parked.service)
                handlers = subscriptions.handlers_for(event) if subscriptions is not None else []
                if not handlers:
                    reason = f"no handler for {parked.routing_key} in {parked.service}"
                    await self._park(parked.service, message, reason)
                for subscription in handlers:
                    await self._run_with_retries(parked.service, subscription, message, event)
            if self._parking_lot is not None:
                await asyncio.to_thread(_delete_parked, self._parking_lot, parked.id)
        except Exception:
            log.exception("replay of a parked message failed; it stays in the parking lot file")
        finally:
            reset_correlation_id(token)

    async def _park(self, service: str, message: OutgoingMessage, reason: str) -> None:
        self._parked_count += 1
        parked = ParkedMessage(
            service, message.routing_key, message.body, reason, id=self._parked_count, parked_at=time.time()
        )
        if self._parking_lot is not None:
            # Durable before the relay may mark the event published: if this write fails,
            # publishing fails and the outbox keeps the event.
            row = await asyncio.to_thread(_store_parked, self._parking_lot, parked)
            parked = ParkedMessage(
                service, message.routing_key, message.body, reason, id=row, parked_at=parked.parked_at
            )
        self._metrics.parked.labels(service=service).inc()
        log.error(
            "event parked",
            extra={"service": service, "routing_key": message.routing_key, "reason": reason},
        )
        self.parked.append(parked)


_PARKED_TABLE = """CREATE TABLE IF NOT EXISTS parked (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    body BLOB NOT NULL,
    reason TEXT NOT NULL,
    parked_at REAL NOT NULL
)"""


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=10)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")  # a parked event must survive power loss
    connection.execute(_PARKED_TABLE)
    return connection


def _store_parked(path: Path, parked: ParkedMessage) -> int:
    connection = _connect(path)
    try:
        with connection:
            cursor = connection.execute(
                "INSERT INTO parked (service, routing_key, body, reason, parked_at) VALUES (?, ?, ?, ?, ?)",
                (parked.service, parked.routing_key, parked.body, parked.reason, parked.parked_at),
            )
            row = cursor.lastrowid
    finally:
        connection.close()
    assert row is not None
    return row


def _delete_parked(path: Path, row: int) -> None:
    connection = _connect(path)
    try:
        with connection:
            connection.execute("DELETE FROM parked WHERE id = ?", (row,))
    finally:
        connection.close()


def load_parked(path: Path) -> list[ParkedMessage]:
    """The parked messages kept in a parking-lot file (none if it does not exist)."""
    return _load_parked(path) if path.exists() else []


def _load_parked(path: Path) -> list[ParkedMessage]:
    connection = _connect(path)
    try:
        rows = connection.execute(
            "SELECT service, routing_key, body, reason, id, parked_at FROM parked ORDER BY id"
        ).fetchall()
    finally:
        connection.close()
    return [
        ParkedMessage(service, key, bytes(body), reason, id=row, parked_at=at)
        for service, key, body, reason, row, at in rows
    ]


def _event_id_of(body: bytes) -> uuid.UUID:
    """The envelope's event id, or a fresh one for a body that has none (malformed)."""
    try:
        return uuid.UUID(str(json.loads(body)["event_id"]))
    except (ValueError, KeyError, TypeError):
        return uuid.uuid4()
