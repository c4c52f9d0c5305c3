"""The pushes one transaction queues: written together just before its commit, and those
due now handed to the dispatcher once it has committed.

The handlers of a batch of events add their inbox notices to the session as they tell
them; the deliveries need those notices' ids. Rather than one INSERT per notice, every
notice of the transaction is written in one statement just before the commit, then every
delivery in another.

On PostgreSQL both are statements of fixed shape whatever the batch size: the columns
travel as arrays through ``unnest``. The ORM's multi-row ``VALUES`` for a batch of 100 has
over a thousand placeholders, more than psycopg caches the parsing of, and parsing it
again for every batch was about a quarter of notification's CPU. SQLite (embedded mode,
tests) keeps the ORM's own flush.

Pushes due now are written already leased and handed over after the commit, so nothing
has to find them again; should the process die before they are sent, their lease runs out
and a claim sends them (see :mod:`notification.dispatch`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import BigInteger, Boolean, String, Table, Text, Uuid, bindparam, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from common.db import UtcDateTime
from common.events.envelope import utc_now
from common.events.outbox import UnitOfWork
from notification.dispatch import Claimed, Lease
from notification.fcm import Push
from notification.models import Delivery, InboxMessage

_PUSHES = "notification.pushes"


class PushSender(Protocol):
    """What queueing needs of the dispatcher (:class:`notification.dispatch.Dispatcher`)."""

    def wake(self) -> None: ...

    def birth_lease(self, count: int) -> Lease | None: ...

    def take(self, pushes: list[Claimed]) -> None: ...


@dataclass(frozen=True)
class QueuedPush:
    message: InboxMessage
    user_id: uuid.UUID
    token: str
    title: str
    body: str
    data: dict[str, str]
    critical: bool
    due: datetime
    created_at: datetime


def pushes_of(uow: UnitOfWork, dispatcher: PushSender) -> list[QueuedPush]:
    """The list this transaction's pushes go into; written just before its commit."""
    info = uow.session.info
    pushes: list[QueuedPush] | None = info.get(_PUSHES)
    if pushes is not None:
        return pushes
    pushes = info[_PUSHES] = []
    session = uow.session

    async def queue() -> None:
        if not pushes:
            return
        now = utc_now()
        due_now = [push.due <= now for push in pushes]
        lease = dispatcher.birth_lease(sum(due_now))
        leased = [lease is not None and now_due for now_due in due_now]
        write = _write_postgresql if session.get_bind().dialect.name == "postgresql" else _write_orm
        ids = await write(session, pushes, [lease.expires_at if lease and hold else None for hold in leased])
        if lease is None:
            uow.after_commit(dispatcher.wake)  # send now, not at the dispatcher's next poll
            return
        handed = [
            Claimed(delivery_id, 0, _push(push), lease.until)
            for push, delivery_id, hold in zip(pushes, ids, leased, strict=True)
            if hold
        ]
        uow.after_commit(lambda: dispatcher.take(handed))

    uow.before_commit(queue)
    return pushes


def _delivery_data(push: QueuedPush, message_id: int) -> dict[str, str]:
    return {**push.data, "message_id": str(message_id)}


def _push(push: QueuedPush) -> Push:
    """What is sent: the delivery row as written (its data names the notice)."""
    return Push(push.token, push.title, push.body, _delivery_data(push, push.message.id), push.critical)


async def _write_orm(session: AsyncSession, pushes: Sequence[QueuedPush], leases: list[datetime | None]) -> list[int]:
    await session.flush()
    rows = [
        Delivery(
            message_id=push.message.id,
            user_id=push.user_id,
            token=push.token,
            title=push.title,
            body=push.body,
            data=_delivery_data(push, push.message.id),
            critical=push.critical,
            status="pending",
            attempts=0,
            next_attempt_at=lease or push.due,
            created_at=push.created_at,
        )
        for push, lease in zip(pushes, leases, strict=True)
    ]
    session.add_all(rows)
    await session.flush()
    return [row.id for row in rows]


def _array(name: str, item: Any) -> Any:
    return bindparam(name, type_=postgresql.ARRAY(item))


_MESSAGES: Table = InboxMessage.__table__  # type: ignore[assignment]
_DELIVERIES: Table = Delivery.__table__  # type: ignore[assignment]
_MESSAGE_COLUMNS = ("user_id", "kind", "title", "body", "source_event_id", "created_at", "critical")
_INSERT_MESSAGES = (
    postgresql.insert(_MESSAGES)
    .from_select(
        list(_MESSAGE_COLUMNS),
        select(
            func.unnest(
                _array("user_id", Uuid()),
                _array("kind", String()),
                _array("title", String()),
                _array("body", Text()),
                _array("source_event_id", Uuid()),
                _array("created_at", UtcDateTime()),
                _array("critical", Boolean()),
            )
            .table_valued(*_MESSAGE_COLUMNS)
            .render_derived()
        ),
    )
    .returning(_MESSAGES.c.id, _MESSAGES.c.user_id, _MESSAGES.c.source_event_id)
)
_DELIVERY_COLUMNS = (
    "message_id",
    "user_id",
    "token",
    "title",
    "body",
    "data",
    "critical",
    "next_attempt_at",
    "created_at",
)
_INSERT_DELIVERIES = (
    postgresql.insert(_DELIVERIES)
    .from_select(
        [*_DELIVERY_COLUMNS, "status", "attempts"],
        select(
            func.unnest(
                _array("message_id", BigInteger()),
                _array("user_id", Uuid()),
                _array("token", String()),
                _array("title", String()),
                _array("body", Text()),
                _array("data", postgresql.JSON()),
                _array("critical", Boolean()),
                _array("next_attempt_at", UtcDateTime()),
                _array("created_at", UtcDateTime()),
            )
            .table_valued(*_DELIVERY_COLUMNS)
            .render_derived(),
            bindparam("status", type_=String()),
            bindparam("attempts", type_=BigInteger()),
        ),
    )
    .returning(_DELIVERIES.c.id, _DELIVERIES.c.message_id, _DELIVERIES.c.token)
)


async def _write_postgresql(
    session: AsyncSession, pushes: Sequence[QueuedPush], leases: list[datetime | None]
) -> list[int]:
    # The notices not written yet (a handler may have flushed its own already), taken out
    # of the ORM's hands and written in one statement; RETURNING keeps no order, so ids
    # come back by each notice's unique (user, source event).
    fresh = [item for item in session.new if isinstance(item, InboxMessage)]
    if fresh:
        for message in fresh:
            session.expunge(message)
        written = await session.execute(
            _INSERT_MESSAGES,
            {
                "user_id": [message.user_id for message in fresh],
                "kind": [message.kind for message in fresh],
                "title": [message.title for message in fresh],
                "body": [message.body for message in fresh],
                "source_event_id": [message.source_event_id for message in fresh],
                "created_at": [message.created_at for message in fresh],
                "critical": [bool(message.critical) for message in fresh],
            },
        )
        ids = {(user_id, event_id): message_id for message_id, user_id, event_id in written}
        for message in fresh:
            message.id = ids[(message.user_id, message.source_event_id)]
    message_ids = [push.message.id for push in pushes]
    rows = await session.execute(
        _INSERT_DELIVERIES,
        {
            "message_id": message_ids,
            "user_id": [push.user_id for push in pushes],
            "token": [push.token for push in pushes],
            "title": [push.title for push in pushes],
            "body": [push.body for push in pushes],
            "data": [_delivery_data(push, message_id) for push, message_id in zip(pushes, message_ids, strict=True)],
            "critical": [push.critical for push in pushes],
            "next_attempt_at": [lease or push.due for push, lease in zip(pushes, leases, strict=True)],
            "created_at": [push.created_at for push in pushes],
            "status": "pending",
            "attempts": 0,
        },
    )
    delivery_ids = {(message_id, token): delivery_id for delivery_id, message_id, token in rows}
    return [delivery_ids[(push.message.id, push.token)] for push in pushes]
