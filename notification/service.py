"""Notices and the in-app inbox (no web framework, no broker code here)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select

from common.db import Database
from common.events.catalog import UserRegistered
from common.events.envelope import utc_now
from common.events.outbox import UnitOfWork
from notification.models import InboxMessage


async def welcome_new_user(event: UserRegistered, uow: UnitOfWork) -> None:
    uow.session.add(
        InboxMessage(
            user_id=event.user_id,
            kind="welcome",
            title="Welcome to SmartGym",
            body="Your account is ready. Enrol your face or use your QR code at any branch.",
            source_event_id=event.event_id,
            created_at=utc_now(),
        )
    )


async def inbox_of(database: Database, user_id: uuid.UUID, *, limit: int) -> Sequence[InboxMessage]:
    async with database.sessions() as session:
        result = await session.scalars(
            select(InboxMessage)
            .where(InboxMessage.user_id == user_id)
            .order_by(InboxMessage.created_at.desc(), InboxMessage.id.desc())
            .limit(limit)
        )
        return result.all()
