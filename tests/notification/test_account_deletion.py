"""A deleted account leaves nothing in notification: push tokens, queued pushes, inbox."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from common.security import Role
from contracts import UserDeleted, UserRegistered
from notification.models import Delivery, InboxMessage, PushToken, Recipient
from tests.notification.conftest import person


async def rows_of(notifications, user_id: uuid.UUID) -> dict[str, int]:
    async with notifications.app.state.kernel.db.sessions() as session:
        return {
            model.__tablename__: int(
                await session.scalar(select(func.count()).select_from(model).where(model.user_id == user_id)) or 0
            )
            for model in (PushToken, Delivery, InboxMessage, Recipient)
        }


async def test_a_deleted_user_loses_tokens_pushes_and_inbox_once_or_twice(notifications, fcm):
    now = datetime.now(UTC)
    quiet = {
        "quiet_start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "quiet_end": (now + timedelta(hours=1)).strftime("%H:%M"),
        "timezone": "UTC",
    }
    leaving, staying = person(Role.CUSTOMER), person(Role.CUSTOMER)
    for who in (leaving, staying):
        await notifications.with_phone(who, **quiet)  # the welcome push waits for the morning
        await notifications.announce(UserRegistered(user_id=who.user_id, email=None, roles=("customer",)))
    assert await rows_of(notifications, leaving.user_id) == {
        "push_tokens": 1,
        "deliveries": 1,
        "inbox_messages": 1,
        "recipients": 1,
    }

    deleted = UserDeleted(user_id=leaving.user_id)
    # The same event twice (a redelivery) and a second copy with its own id: all harmless.
    await notifications.announce(deleted, deleted, UserDeleted(user_id=leaving.user_id))
    assert set((await rows_of(notifications, leaving.user_id)).values()) == {0}
    assert await rows_of(notifications, staying.user_id) == {
        "push_tokens": 1,
        "deliveries": 1,
        "inbox_messages": 1,
        "recipients": 1,
    }
