"""Idempotent consumers: the processed-event inbox.

Events arrive at least once (a relay killed between confirm and mark republishes, the
broker redelivers after a lost ack). Each consumer claims an event's id in its service's
``processed_events`` table in the same transaction as the handler's changes, so a repeat
finds the claim and is skipped: its effects happen once. A batch of events is claimed and
applied in one transaction (:func:`idempotent_batch`).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

from opentelemetry.trace import Span
from sqlalchemy import String, Table, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from common import tracing
from common.context import bind_correlation_id, reset_correlation_id
from common.db import SWEEP_BATCH_ROWS, SWEEP_MAX_BATCHES, BinaryArray, Database, KernelTables
from common.events.bus import Subscriptions
from common.events.envelope import Event, utc_now
from common.events.outbox import UnitOfWork
from common.observability import Metrics

log = logging.getLogger(__name__)


def idempotent(
    database: Database,
    tables: KernelTables,
    metrics: Metrics,
    consumer_name: str,
    handler: Callable[[Any, UnitOfWork], Awaitable[None]],
    *,
    on_commit: Callable[[], None],
) -> Callable[[Event], Awaitable[None]]:
    """Wrap ``handler`` so each event's effects commit once, with its inbox record.

    The inbox row and the handler's effects share one transaction; a redelivered event
    finds its row and is skipped. Concurrent duplicates serialise on the primary key.
    """

    async def apply(event: Event) -> None:
        with consume_span(event, consumer_name):
            async with UnitOfWork(database, tables, on_commit) as uow:
                if not await _claim(uow.session, tables, [event.event_id], consumer_name, database.is_sqlite):
                    metrics.duplicates.labels(consumer_name).inc()
                    return
                await handler(event, uow)

    return apply


_NO_SPAN: AbstractContextManager[None] = contextlib.nullcontext()


def consume_span(event: Event, consumer_name: str) -> AbstractContextManager[Span | None]:
    """The consumer's span, continuing the trace the event arrived in (nothing when off)."""
    if not tracing.enabled():
        return _NO_SPAN  # no attributes built for a span nobody records
    return tracing.span(
        f"consume {event.routing_key()}",
        kind=tracing.SpanKind.CONSUMER,
        parent=event.traceparent,
        attributes={
            tracing.SERVICE_ATTRIBUTE: consumer_name.split(".", 1)[0],
            "messaging.operation.type": "process",
            "messaging.destination.name": event.routing_key(),
            "messaging.message.id": str(event.event_id),
            "smartgym.consumer": consumer_name,
        },
    )


def idempotent_batch(
    database: Database,
    tables: KernelTables,
    metrics: Metrics,
    subscriptions: Subscriptions,
    *,
    on_commit: Callable[[], None],
) -> Callable[[Sequence[Event]], Awaitable[None]]:
    """Apply several events in one transaction: one inbox claim per consumer for the
    whole batch, each new event's handlers in delivery order, one commit. Any error
    rolls the whole batch back (the bus then replays it one event at a time)."""

    async def apply(events: Sequence[Event]) -> None:
        # Each event's consumers, found once per event (not once per consumer and event).
        wanted: dict[str, tuple[Callable[[Any, UnitOfWork], Awaitable[None]], list[Event]]] = {}
        for event in events:
            for item in subscriptions.handlers_for(event):
                wanted.setdefault(item.consumer_name, (item.handler, []))[1].append(event)
        async with UnitOfWork(database, tables, on_commit) as uow:
            for consumer_name in dict.fromkeys(item.consumer_name for item in subscriptions.items):
                if consumer_name not in wanted:
                    continue
                handler, its_events = wanted[consumer_name]
                claimed = await _claim(
                    uow.session, tables, [event.event_id for event in its_events], consumer_name, database.is_sqlite
                )
                for event in its_events:
                    if event.event_id not in claimed:
                        metrics.duplicates.labels(consumer_name).inc()
                        continue
                    claimed.discard(event.event_id)  # the same event twice in one batch runs once
                    token = bind_correlation_id(event.correlation_id)
                    try:
                        with consume_span(event, consumer_name):
                            await handler(event, uow)
                    finally:
                        reset_correlation_id(token)

    return apply


async def _claim(
    session: AsyncSession, tables: KernelTables, event_ids: Sequence[uuid.UUID], consumer: str, is_sqlite: bool
) -> set[uuid.UUID]:
    """Insert inbox rows; returns the ids that were not there yet (ours to apply)."""
    if not event_ids:
        return set()
    now = utc_now()
    unique = list(dict.fromkeys(event_ids))
    if not is_sqlite:
        # One statement of fixed shape whatever the batch size: the ids travel as one
        # array. A multi-row VALUES is a new statement for every batch size, compiled
        # afresh each time (a quarter of the consumer's CPU per batch of 100).
        result = await session.execute(
            _claim_statement(tables.processed_events),
            {"event_ids": unique, "consumer": consumer, "processed_at": now},
        )
        return set(result.scalars())
    statement = (
        sqlite.insert(tables.processed_events)
        .values([{"event_id": event_id, "consumer": consumer, "processed_at": now} for event_id in unique])
        .on_conflict_do_nothing()
        .returning(tables.processed_events.c.event_id)
    )
    # RETURNING rather than rowcount: drivers disagree on rowcount for ON CONFLICT.
    return set((await session.execute(statement)).scalars())


_CLAIM_STATEMENTS: dict[Table, Any] = {}


def _claim_statement(processed: Table) -> Any:
    """Built once per inbox table: building it per batch cost a cache-key walk each time."""
    statement = _CLAIM_STATEMENTS.get(processed)
    if statement is None:
        statement = _CLAIM_STATEMENTS[processed] = _build_claim_statement(processed)
    return statement


def _build_claim_statement(processed: Table) -> Any:
    ids = func.unnest(bindparam("event_ids", type_=BinaryArray("uuid"))).table_valued("event_id").render_derived()
    return (
        postgresql.insert(processed)
        .from_select(
            ["event_id", "consumer", "processed_at"],
            select(
                ids.c.event_id,
                bindparam("consumer", type_=String()),
                bindparam("processed_at", type_=processed.c.processed_at.type),
            ),
        )
        .on_conflict_do_nothing()
        .returning(processed.c.event_id)
    )


async def sweep_processed_events(
    *,
    database: Database,
    tables: KernelTables,
    retention: timedelta,
    batch_rows: int = SWEEP_BATCH_ROWS,
    max_batches: int = SWEEP_MAX_BATCHES,
    on_deleted: Callable[[int], object] | None = None,
) -> int:
    """Forget consumed events older than ``retention``: redeliveries come within minutes
    (a relay restarted between confirm and mark, an ack lost with its connection), so the
    inbox need not grow for ever. Returns how many ids went."""
    processed = tables.processed_events
    return await database.delete_in_batches(
        table=processed,
        condition=processed.c.processed_at < utc_now() - retention,
        batch_rows=batch_rows,
        max_batches=max_batches,
        on_deleted=on_deleted,
    )


def bind_idempotent(
    subscriptions: Subscriptions,
    database: Database,
    tables: KernelTables,
    metrics: Metrics,
    *,
    on_commit: Callable[[], None],
) -> Subscriptions:
    """The bus-level form of a service's subscriptions: every handler idempotent, plus a
    batch handler for buses that deliver several events at once."""
    bound = Subscriptions(subscriptions.service)
    for item in subscriptions.items:
        bound.add_bus_handler(
            item.event_type,
            idempotent(database, tables, metrics, item.consumer_name, item.handler, on_commit=on_commit),
            name=item.consumer_name.removeprefix(f"{subscriptions.service}."),
        )
    bound.batch_handler = idempotent_batch(database, tables, metrics, subscriptions, on_commit=on_commit)
    return bound
