"""Sends queued pushes: sends them concurrently, records each batch's outcomes together.

Pushes reach the sender two ways:

* **Handed over at birth.** The transaction that queues a push due now writes it already
  leased, and after its commit hands it straight to :meth:`Dispatcher.take`: no query
  finds it again, and it is sent as soon as a send slot is free. The consumer only does
  so while fewer than ``HANDED_MAX`` pushes are in hand, so a slow FCM backs up in the
  database, not in memory; past that, pushes are written due and wait for a claim.
* **Claimed.** Everything else (retries, quiet hours ending, pushes past the hand-over
  bound, those a stopped or crashed process held) is claimed a batch at a time: one
  statement picks due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so replicas never
  take the same row) and writes their lease. While one claimed batch is being sent the
  next is claimed; a few batches are in flight at most.

Either way a batch's outcomes are recorded in one transaction when its last send
returns, and every send goes through one bounded pool (``notification_send_concurrency``).

A lease is ``next_attempt_at`` pushed into the future: nobody else sends the row before
it runs out. A push is only started while its lease leaves time for the send to finish
(two FCM timeouts: the send and its retry with a fresh access token); one that waited
longer is left to whoever leases it next, so a backlog in memory never makes a second
sender of it. If the process dies after FCM accepted a push but before the outcome was
recorded, the lease runs out and the push is sent again: at-least-once, like everything
else here, and the phone shows it once, because every push names its notice as its
collapse key (:mod:`notification.fcm`).

Retries back off exponentially with jitter, never sooner than FCM's Retry-After; after
``notification_max_attempts`` the delivery is parked with its last error for an operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from prometheus_client import Counter, Histogram
from sqlalchemy import Table, any_, bindparam, delete, select, update

from common.db import BinaryArray, Database
from common.events.envelope import utc_now
from common.observability import Metrics
from notification.fcm import Outcome, Push, SendResult
from notification.models import Delivery, PushToken
from notification.settings import NotificationSettings

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
BATCH = 200
BATCHES_IN_FLIGHT = 3
# Pushes handed over at birth and not yet recorded, at most (a few seconds of sending).
HANDED_MAX = 2000
# Data a push or SMS carries once (a password reset code): dropped from the delivery row
# as soon as the row is done with (sent, dropped, parked or expired), with its text.
ONCE_DATA_KEYS = frozenset({"reset_token"})


_DELIVERIES: Table = Delivery.__table__  # type: ignore[assignment]
_MARK_SENT = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.id == any_(bindparam("ids", type_=BinaryArray("int8"))))
    .values(
        status="sent",
        sent_at=bindparam("sent_at", type_=_DELIVERIES.c.sent_at.type),
        last_error=None,
        attempts=bindparam("attempts", type_=_DELIVERIES.c.attempts.type),
    )
)


def scrub(row: Delivery) -> None:
    if ONCE_DATA_KEYS.isdisjoint(row.data):
        return
    row.data = {key: value for key, value in row.data.items() if key not in ONCE_DATA_KEYS}
    row.body = ""  # an SMS's text holds the code itself


def expired(data: dict[str, Any], now: datetime) -> bool:
    """A code that expired while the delivery waited (quiet hours, retries) is not sent."""
    raw = data.get("expires_at")
    try:
        return raw is not None and datetime.fromisoformat(str(raw)) <= now
    except ValueError:
        return False


class Sender(Protocol):
    async def send(self, push: Push) -> SendResult: ...


@dataclass(frozen=True)
class Claimed:
    id: int
    attempts: int
    push: Push
    until: float  # time.monotonic() at which this process's lease on the row runs out


@dataclass(frozen=True)
class Lease:
    """A lease taken at birth: written into the rows as ``expires_at``, kept as ``until``."""

    expires_at: datetime
    until: float


class DispatchMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.outcomes = Counter(
            "notification_push_outcomes", "Push attempts, by outcome.", ["outcome"], registry=metrics.registry
        )
        self.send_seconds = Histogram(
            "notification_push_send_seconds", "Time FCM took to answer one push.", registry=metrics.registry
        )


class Dispatcher:
    def __init__(
        self, *, database: Database, sender: Sender, settings: NotificationSettings, metrics: DispatchMetrics
    ) -> None:
        self._database = database
        self._sender = sender
        self._settings = settings
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._semaphore = asyncio.Semaphore(settings.notification_send_concurrency)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(BATCHES_IN_FLIGHT)
        self._handed = 0
        self._releases: set[asyncio.Task[None]] = set()
        timeout_s = max(settings.fcm_timeout_s, settings.sms_timeout_s)
        # A send may take two timeouts (a refused access token is replaced and the send
        # tried once more); the lease outlasts a few of them.
        self._send_needs_s = 2 * timeout_s + 1.0
        self._lease = max(LEASE, timedelta(seconds=4 * timeout_s))

    def wake(self) -> None:
        self._wake.set()

    def birth_lease(self, count: int) -> Lease | None:
        """A lease for ``count`` pushes about to be queued and then handed over with
        :meth:`take`, or None when the dispatcher is not running or has enough in hand
        (they are then queued due, for a claim)."""
        if self._task is None or self._handed + count > HANDED_MAX:
            return None
        return Lease(expires_at=utc_now() + self._lease, until=time.monotonic() + self._lease.total_seconds())

    def take(self, pushes: list[Claimed]) -> None:
        """Send pushes leased at birth, now that their rows are committed."""
        if not pushes:
            return
        if self._task is None:
            # Stopped between the lease and the commit (a rolling restart): the rows are
            # made due again, so another replica sends them at its next poll, not when the
            # lease runs out (which is what happens should this fail too).
            release = asyncio.create_task(self._release([item.id for item in pushes]), name="notification-release")
            self._releases.add(release)
            release.add_done_callback(self._releases.discard)
            return
        self._handed += len(pushes)
        batch = asyncio.create_task(self._send_batch(pushes), name="notification-push-handed")
        self._in_flight.add(batch)
        batch.add_done_callback(lambda task: self._handed_done(task, len(pushes)))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notification-dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # Batches already sent get their outcomes recorded (what is cut short is sent
        # again when its lease runs out: at-least-once).
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=5.0)
        for batch in list(self._in_flight):
            batch.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self._slots.acquire()
            # Cleared before the claim: a push queued while it runs wakes the next one
            # instead of waiting for the poll.
            self._wake.clear()
            try:
                claimed = await self._claim()
            except Exception:
                log.warning("push claim failed; trying again", exc_info=True)
                claimed = []
            if claimed:
                batch = asyncio.create_task(self._send_batch(claimed), name="notification-push-batch")
                self._in_flight.add(batch)
                batch.add_done_callback(self._batch_done)
            else:
                self._slots.release()
            if len(claimed) < BATCH:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
                # arrives as the event is set, and stop() would wait for ever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._settings.notification_poll_interval_s):
                        await self._wake.wait()

    async def _release(self, ids: list[int]) -> None:
        try:
            async with self._database.sessions() as session, session.begin():
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(ids), Delivery.status == "pending")
                    .values(next_attempt_at=utc_now())
                    .execution_options(synchronize_session=False)
                )
        except Exception:
            log.warning("pushes not handed back; they are sent when their lease runs out", exc_info=True)

    def _batch_done(self, batch: asyncio.Task[None]) -> None:
        self._slots.release()
        self._finished(batch)

    def _handed_done(self, batch: asyncio.Task[None], count: int) -> None:
        self._handed -= count
        self._finished(batch)

    def _finished(self, batch: asyncio.Task[None]) -> None:
        self._in_flight.discard(batch)
        if not batch.cancelled() and batch.exception() is not None:
            log.warning("push batch failed; its leases run out and it is sent again", exc_info=batch.exception())

    async def dispatch_once(self) -> int:
        """One batch, claimed, sent and recorded before returning (tests, tools)."""
        claimed = await self._claim()
        if claimed:
            await self._send_batch(claimed)
        return len(claimed)

    async def _send_batch(self, claimed: list[Claimed]) -> None:
        results = await asyncio.gather(*(self._send(item) for item in claimed))
        outcomes = [(item, result) for item, result in zip(claimed, results, strict=True) if result is not None]
        if outcomes:
            await self._record(outcomes)

    async def _claim(self) -> list[Claimed]:
        """Lease one batch of due deliveries in one statement: the rows are picked (locked,
        skipping those another replica holds) and their lease written in the same UPDATE,
        which hands back what is to be sent."""
        now = utc_now()
        until = time.monotonic() + self._lease.total_seconds()
        due = (
            select(Delivery.id)
            .where(Delivery.status == "pending", Delivery.next_attempt_at <= now)
            .order_by(Delivery.critical.desc(), Delivery.next_attempt_at)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
        lease = (
            update(Delivery)
            .where(Delivery.id.in_(due.scalar_subquery()))
            .values(next_attempt_at=now + self._lease)
            .returning(
                Delivery.id,
                Delivery.attempts,
                Delivery.token,
                Delivery.title,
                Delivery.body,
                Delivery.data,
                Delivery.critical,
            )
            .execution_options(synchronize_session=False)
        )
        async with self._database.sessions() as session, session.begin():
            rows = (await session.execute(lease)).all()
            claimed, stale = [], []
            for row in rows:
                if expired(row.data, now):
                    stale.append(row.id)
                    continue
                push = Push(row.token, row.title, row.body, dict(row.data), row.critical)
                claimed.append(Claimed(row.id, row.attempts, push, until))
            if stale:
                for delivery in await session.scalars(select(Delivery).where(Delivery.id.in_(stale))):
                    delivery.status, delivery.last_error = "dropped", "expired before it could be sent"
                    scrub(delivery)
        # Critical first, then oldest, as they were picked (RETURNING keeps no order).
        claimed.sort(key=lambda item: (not item.push.critical, item.id))
        return claimed

    async def _send(self, item: Claimed) -> SendResult | None:
        """The send's result, or None when the lease no longer leaves time for it (the row
        is left to whoever leases it next: never two senders of one push)."""
        async with self._semaphore:
            if time.monotonic() + self._send_needs_s > item.until:
                self._metrics.outcomes.labels("lease_ran_out").inc()
                return None
            with self._metrics.send_seconds.time():
                result = await self._sender.send(item.push)
        self._metrics.outcomes.labels(result.outcome.value).inc()
        return result

    async def _record(self, outcomes: list[tuple[Claimed, SendResult]]) -> None:
        """Every outcome of one batch in one transaction: the common case (sent, nothing to
        scrub) in one UPDATE, the rest row by row."""
        now = utc_now()
        plain_sent = [
            item
            for item, result in outcomes
            if result.outcome is Outcome.SENT and ONCE_DATA_KEYS.isdisjoint(item.push.data)
        ]
        by_attempts: dict[int, list[int]] = {}
        for item in plain_sent:
            by_attempts.setdefault(item.attempts + 1, []).append(item.id)
        done = {item.id for item in plain_sent}
        others = [(item, result) for item, result in outcomes if item.id not in done]
        async with self._database.sessions() as session, session.begin():
            for attempts, ids in by_attempts.items():
                if self._database.is_sqlite:
                    await session.execute(
                        update(Delivery)
                        .where(Delivery.id.in_(ids))
                        .values(status="sent", sent_at=now, last_error=None, attempts=attempts)
                        .execution_options(synchronize_session=False)
                    )
                else:
                    # One cached statement whatever the batch size: an IN list of 100
                    # placeholders is parsed afresh by psycopg for every batch.
                    await session.execute(_MARK_SENT, {"ids": ids, "sent_at": now, "attempts": attempts})
            if not others:
                return
            outcomes = others
            rows = {
                row.id: row
                for row in await session.scalars(
                    select(Delivery).where(Delivery.id.in_([item.id for item, _ in outcomes]))
                )
            }
            gone: set[str] = set()
            for item, result in outcomes:
                row = rows.get(item.id)
                if row is None:
                    continue
                row.attempts = item.attempts + 1
                if result.outcome is Outcome.SENT:
                    row.status, row.sent_at, row.last_error = "sent", now, None
                elif result.outcome is Outcome.UNREGISTERED:
                    # The app is gone from that phone: forget the token.
                    row.status, row.last_error = "dropped", result.detail
                    gone.add(item.push.token)
                elif result.outcome is Outcome.RETRY and row.attempts < self._settings.notification_max_attempts:
                    row.next_attempt_at = now + timedelta(seconds=self._backoff(row.attempts, result.retry_after_s))
                    row.last_error = result.detail
                else:
                    row.status, row.last_error = "parked", f"{result.outcome.value}: {result.detail}"[:200]
                    log.warning("push parked", extra={"delivery": row.id, "reason": row.last_error})
                if row.status != "pending":
                    scrub(row)
            if gone:
                await session.execute(delete(PushToken).where(PushToken.token.in_(gone)))

    def _backoff(self, attempts: int, retry_after_s: float | None) -> float:
        base = self._settings.notification_retry_base_s * float(2 ** (attempts - 1))
        delay = min(self._settings.notification_retry_cap_s, base) * random.uniform(0.8, 1.2)
        return float(max(delay, retry_after_s or 0.0))
