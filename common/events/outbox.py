"""Transactional outbox and its relay to the bus.

A state change and the events it causes are written in one database transaction
(:class:`UnitOfWork`). The :class:`OutboxRelay` publishes unpublished rows in id order
and marks them published only after the bus confirmed them, so a broker outage delays
events but never loses them; a relay killed between confirm and mark republishes, and
consumers absorb the repeat through the processed-event inbox (:mod:`common.events.inbox`).

Several replicas of one service may relay at once: on PostgreSQL each claims its batch
with ``FOR UPDATE SKIP LOCKED``, and a relay that dies releases its claim with its
connection, so no row is stranded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from types import TracebackType
from typing import Any, Self

from opentelemetry.trace import Span
from sqlalchemy import Table, any_, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from common import tracing
from common.db import BinaryArray, Database, KernelTables
from common.events.bus import EventBus
from common.events.envelope import PURGED_AFTER_PUBLISH, Event, OutgoingMessage, envelope_traceparent, utc_now
from common.observability import Metrics
from common.periodic import Periodic

log = logging.getLogger(__name__)

BACKLOG_MEASURE_INTERVAL_S = 15.0
# Relay rounds in flight at once (see OutboxRelay._relay_rounds).
PIPELINED_ROUNDS = 2
# The retention sweep of published rows: the first a minute after the relay starts (not
# during a service's start-up), then every five minutes.
OUTBOX_FIRST_SWEEP_S = 60.0
OUTBOX_SWEEP_INTERVAL_S = 300.0


class UnitOfWork:
    """One business transaction: a session plus the events it will publish on commit.

    ::

        async with kernel.unit_of_work() as uow:
            uow.session.add(user)
            uow.emit(UserRegistered(...))
    """

    def __init__(self, database: Database, tables: KernelTables, on_commit: Callable[[], None]) -> None:
        self._database = database
        self._tables = tables
        self._on_commit = on_commit
        self._after_commit: list[Callable[[], None]] = []
        self._before_commit: list[Callable[[], Awaitable[None]]] = []
        self._events: list[Event] = []
        self._session: AsyncSession | None = None

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("UnitOfWork used outside 'async with'")
        return self._session

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def before_commit(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` once, just before the commit, inside the transaction: to write
        in one statement what several handlers of a batch added (a failure rolls back)."""
        if callback not in self._before_commit:
            self._before_commit.append(callback)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the transaction has committed (never on a rollback): to
        wake a worker that acts on what was just written."""
        self._after_commit.append(callback)

    async def __aenter__(self) -> Self:
        self._session = self._database.sessions()
        await self._session.begin()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        session = self.session
        try:
            if exc_type is not None:
                await session.rollback()
                return
            try:
                for prepare in self._before_commit:
                    await prepare()
            except BaseException:
                await session.rollback()
                raise
            if self._events:
                await write_outbox(session, self._tables, self._events)
            await session.commit()
        finally:
            await session.close()
            self._session = None
        if self._events:
            self._on_commit()
        for callback in self._after_commit:
            callback()


async def write_outbox(session: AsyncSession, tables: KernelTables, events: list[Event]) -> None:
    now = utc_now()
    # The trace the events are caused in (a request's, or the consuming span's): the relay
    # and the consumers continue it, however long the events wait in the outbox.
    traceparent = tracing.current_traceparent()
    if session.sync_session.get_bind().dialect.name == "postgresql":
        # One statement of fixed shape whatever the number of events, the columns as
        # arrays: an executemany is one INSERT per event through psycopg's pipeline (the
        # largest part of a producing transaction's CPU at 100 events).
        await session.execute(
            _outbox_insert(tables.outbox),
            {
                "event_ids": [event.event_id for event in events],
                "routing_keys": [event.routing_key() for event in events],
                "bodies": [event.to_wire(traceparent=traceparent).decode() for event in events],
                "correlation_ids": [event.correlation_id for event in events],
                "created_at": now,
            },
        )
        return
    await session.execute(
        insert(tables.outbox),
        [
            {
                "event_id": event.event_id,
                "routing_key": event.routing_key(),
                "body": event.to_wire(traceparent=traceparent).decode(),
                "correlation_id": event.correlation_id,
                "created_at": now,
            }
            for event in events
        ],
    )


_OUTBOX_INSERTS: dict[Table, Any] = {}


def _outbox_insert(outbox: Table) -> Any:
    """``INSERT … SELECT … FROM unnest(arrays) WITH ORDINALITY ORDER BY ordinality``: the
    ids (and so the relay's order) follow the order the events were emitted in."""
    statement = _OUTBOX_INSERTS.get(outbox)
    if statement is None:
        rows = (
            func.unnest(
                bindparam("event_ids", type_=BinaryArray("uuid")),
                bindparam("routing_keys", type_=BinaryArray("text")),
                bindparam("bodies", type_=BinaryArray("text")),
                bindparam("correlation_ids", type_=BinaryArray("text")),
            )
            .table_valued("event_id", "routing_key", "body", "correlation_id", with_ordinality="position")
            .render_derived()
        )
        statement = insert(outbox).from_select(
            ["event_id", "routing_key", "body", "correlation_id", "created_at"],
            select(
                rows.c.event_id,
                rows.c.routing_key,
                rows.c.body,
                rows.c.correlation_id,
                bindparam("created_at", type_=outbox.c.created_at.type),
            ).order_by(rows.c.position),
        )
        _OUTBOX_INSERTS[outbox] = statement
    return statement


class OutboxRelay:
    """Moves committed outbox rows to the bus, in order, at least once."""

    def __init__(
        self,
        *,
        service: str,
        database: Database,
        tables: KernelTables,
        bus: EventBus,
        metrics: Metrics,
        batch_size: int = 500,
        poll_interval_s: float = 0.5,
        idle_poll_max_s: float = 4.0,
        retention: timedelta = timedelta(days=7),
        max_backoff_s: float = 5.0,
    ) -> None:
        self._service = service
        self._database = database
        self._outbox = tables.outbox
        self._bus = bus
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._idle_poll_max_s = max(poll_interval_s, idle_poll_max_s)
        self._retention = retention
        self._max_backoff_s = max_backoff_s
        self._wakeup = asyncio.Event()
        # SQLite has no SKIP LOCKED: two rounds there would claim the same rows.
        self._pipelined = 1 if database.is_sqlite else PIPELINED_ROUNDS
        self._task: asyncio.Task[None] | None = None
        # Beside the rounds, not between them: a sweep of five minutes' published rows is
        # tens of batches, and events committed meanwhile must not wait for it.
        self._sweeps = Periodic(
            f"outbox-sweep:{service}", OUTBOX_SWEEP_INTERVAL_S, self._sweep, first_after_s=OUTBOX_FIRST_SWEEP_S
        )
        self._stopping = False

    def wake(self) -> None:
        """Called after a commit that wrote events: publish now rather than at the next poll."""
        self._wakeup.set()

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"outbox-relay:{self._service}")

    async def stop(self, *, flush_timeout_s: float = 5.0) -> None:
        """Stop the loop after trying, for at most ``flush_timeout_s``, to empty the outbox."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=flush_timeout_s)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                log.warning(
                    "outbox not empty at shutdown; rows stay for the next start", extra={"service": self._service}
                )
            self._task = None

    async def _run(self) -> None:
        rounds: list[asyncio.Task[int]] = []
        await self._sweeps.start()
        try:
            await self._relay_rounds(rounds)
        finally:
            await self._sweeps.stop()
            for pending in rounds:
                pending.cancel()
            await asyncio.gather(*rounds, return_exceptions=True)

    async def _relay_rounds(self, rounds: list[asyncio.Task[int]]) -> None:
        """Rounds of claim → publish → confirm → mark. While one round waits for its
        confirms, the next claims the rows after it (``SKIP LOCKED`` keeps them apart):
        up to ``PIPELINED_ROUNDS`` at once, so a backlog drains at the broker's pace, not
        at one database and one broker round trip per batch."""
        backoff = 0.0
        measure_due = 0.0
        idle_wait = self._poll_interval_s
        loop = asyncio.get_running_loop()
        while True:
            if loop.time() >= measure_due:
                # Often enough for an alert on a growing backlog, and measured while the
                # broker is away too (when it matters most); one indexed count.
                measure_due = loop.time() + BACKLOG_MEASURE_INTERVAL_S
                await self._measure_backlog()
            # Cleared before the claim, not after the round: a commit that lands while
            # this round runs is then not missed until the next poll.
            self._wakeup.clear()
            claimed: asyncio.Future[int] = loop.create_future()
            current = asyncio.create_task(self.relay_once(claimed=claimed), name=f"outbox-round:{self._service}")
            rounds.append(current)
            await asyncio.wait([claimed, current], return_when=asyncio.FIRST_COMPLETED)
            full = claimed.done() and claimed.result() >= self._batch_size
            if full and len(rounds) < self._pipelined:
                continue  # more are waiting: claim them while this batch is confirmed
            # A full batch waits for the oldest round only; anything else for them all.
            finishing = rounds[:1] if full else list(rounds)
            results = await asyncio.gather(*finishing, return_exceptions=True)
            rounds[:] = [pending for pending in rounds if not pending.done()]
            failures = [result for result in results if isinstance(result, BaseException)]
            if failures:
                if any(isinstance(failure, asyncio.CancelledError) for failure in failures):
                    raise asyncio.CancelledError
                # The rounds still in flight finish first: a retry must not claim their rows.
                await asyncio.gather(*rounds, return_exceptions=True)
                rounds.clear()
                backoff = min(self._max_backoff_s, max(0.1, backoff * 2))
                log.warning(
                    "outbox relay failed; retrying in %.1fs",
                    backoff,
                    exc_info=failures[0],
                    extra={"service": self._service},
                )
                if self._stopping:
                    return
                await asyncio.sleep(backoff * (0.5 + random.random() / 2))
                continue
            backoff = 0.0
            if full:
                continue
            if self._stopping:
                return
            # This process's own commits wake the relay; a poll only finds rows that another
            # process wrote (a command-line tool, a replica that died before publishing).
            # Polls that keep finding nothing back off: on an idle replica a poll every
            # 0.5 s was half of its CPU.
            relayed = sum(result for result in results if isinstance(result, int))
            idle_wait = self._poll_interval_s if relayed else min(idle_wait * 2, self._idle_poll_max_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=idle_wait)

    async def relay_once(self, *, claimed: asyncio.Future[int] | None = None) -> int:
        """Publish one batch; returns how many rows were published. ``claimed`` learns how
        many rows this round holds as soon as it holds them and its publishes are queued."""
        outbox = self._outbox
        async with self._database.transaction() as session:
            rows = (
                await session.execute(
                    select(outbox.c.id, outbox.c.event_id, outbox.c.routing_key, outbox.c.body, outbox.c.correlation_id)
                    .where(outbox.c.published_at.is_(None))
                    .order_by(outbox.c.id)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if claimed is not None and not claimed.done():
                # Resolved now, seen by the loop only after this round's publishes are on
                # the channel: the next round's events queue behind them, in id order.
                claimed.set_result(len(rows))
            if not rows:
                return 0
            messages = [
                OutgoingMessage(row.event_id, row.routing_key, row.body.encode(), row.correlation_id) for row in rows
            ]
            spans = self._publish_spans(messages) if tracing.enabled() else []
            if spans:
                messages = [replace(message, traceparent=tracing.traceparent_of(span)) for message, span in spans]
            try:
                await self._bus.publish_many(messages)
            except Exception as exc:
                for _, span in spans:
                    tracing.mark_error(span, type(exc).__name__)
                    span.end()
                await session.rollback()
                await self._record_failure([row.id for row in rows], exc)
                raise
            for _, span in spans:
                span.end()
            # Rows carrying biometrics go as soon as the broker has them; the rest stay for
            # the retention period (diagnosis, replay).
            purged = {row.id for row in rows if row.routing_key in PURGED_AFTER_PUBLISH}
            kept = [row.id for row in rows if row.id not in purged]
            await self._mark_published(session, purged=sorted(purged), kept=kept)
        return len(rows)

    async def _mark_published(self, session: AsyncSession, *, purged: list[int], kept: list[int]) -> None:
        outbox = self._outbox
        if self._database.is_sqlite:
            if purged:
                await session.execute(delete(outbox).where(outbox.c.id.in_(purged)))
            if kept:
                await session.execute(update(outbox).where(outbox.c.id.in_(kept)).values(published_at=utc_now()))
            return
        # Fixed-shape statements over an id array: an IN list of 500 placeholders is a new
        # query text for every batch size, parsed afresh by psycopg and planned afresh by
        # PostgreSQL (a fifth of the relay's CPU per round).
        statements = _mark_statements(outbox)
        if purged:
            await session.execute(statements[0], {"ids": purged})
        if kept:
            await session.execute(statements[1], {"ids": kept, "published_at": utc_now()})

    def _publish_spans(self, messages: list[OutgoingMessage]) -> list[tuple[OutgoingMessage, Span]]:
        """One producer span per event, continuing the trace its envelope carries; the bus
        hands each span's context to the consumers."""
        spans = []
        for message in messages:
            parent = tracing.context_of(envelope_traceparent(message.body))
            span = tracing.tracer().start_span(
                f"publish {message.routing_key}",
                context=parent,
                kind=tracing.SpanKind.PRODUCER,
                attributes={
                    tracing.SERVICE_ATTRIBUTE: self._service,
                    "messaging.operation.type": "send",
                    "messaging.destination.name": message.routing_key,
                    "messaging.message.id": str(message.event_id),
                    "smartgym.outbox": True,
                },
            )
            spans.append((message, span))
        return spans

    async def _record_failure(self, ids: list[int], exc: Exception) -> None:
        with contextlib.suppress(Exception):
            async with self._database.transaction() as session:
                await session.execute(
                    update(self._outbox)
                    .where(self._outbox.c.id.in_(ids))
                    .values(attempts=self._outbox.c.attempts + 1, last_error=repr(exc)[:1000])
                )

    async def backlog(self) -> int:
        async with self._database.sessions() as session:
            count = await session.scalar(
                select(func.count()).select_from(self._outbox).where(self._outbox.c.published_at.is_(None))
            )
        return int(count or 0)

    async def _sweep(self) -> None:
        """Published rows past the retention go (a failed round is logged by ``Periodic``
        and tried again at the next)."""
        await self._database.delete_in_batches(
            table=self._outbox,
            condition=self._outbox.c.published_at < utc_now() - self._retention,
            on_deleted=self._metrics.retention_swept.labels(self._service, "outbox").inc,
        )

    async def _measure_backlog(self) -> None:
        try:
            self._metrics.outbox_backlog.labels(self._service).set(await self.backlog())
        except Exception:
            log.warning("outbox backlog not measured", exc_info=True, extra={"service": self._service})


_MARK_STATEMENTS: dict[Table, tuple[Any, Any]] = {}


def _mark_statements(outbox: Table) -> tuple[Any, Any]:
    """The relay's delete (purged rows) and mark-published statements for one outbox
    table, built once so SQLAlchemy's compiled cache and psycopg's prepared statements
    serve every round."""
    statements = _MARK_STATEMENTS.get(outbox)
    if statements is None:
        ids = any_(bindparam("ids", type_=BinaryArray("bigint")))
        statements = (
            delete(outbox).where(outbox.c.id == ids),
            update(outbox)
            .where(outbox.c.id == ids)
            .values(published_at=bindparam("published_at", type_=outbox.c.published_at.type)),
        )
        _MARK_STATEMENTS[outbox] = statements
    return statements
