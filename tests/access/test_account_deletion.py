"""A deleted account leaves no presence (anti-passback, occupancy) or visit ranking behind."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from access.models import Presence, VisitScore
from contracts import UserDeleted
from tests.access.conftest import entry_pass, membership
from tests.support.waiting import eventually


async def rows_of(door, member_id: uuid.UUID) -> tuple[int, int]:
    counts = []
    async with door.app.state.kernel.db.sessions() as session:
        for model in (Presence, VisitScore):
            query = select(func.count()).select_from(model).where(model.member_id == member_id)
            counts.append(int(await session.scalar(query) or 0))
    return counts[0], counts[1]


async def test_a_deleted_member_is_forgotten_by_the_door(door):
    leaving, staying = uuid.uuid4(), uuid.uuid4()
    for member in (leaving, staying):
        await door.announce(membership(member))
        assert (await door.scan(entry_pass(member))).json()["granted"] is True

    async def both_seen() -> bool:  # the visit ranking follows AccessGranted through the bus
        return await rows_of(door, leaving) == (1, 1) and await rows_of(door, staying) == (1, 1)

    await eventually(both_seen, timeout=10)
    deleted = UserDeleted(user_id=leaving)
    await door.announce(deleted, deleted, UserDeleted(user_id=leaving))  # redelivered, then repeated
    assert await rows_of(door, leaving) == (0, 0)
    assert await rows_of(door, staying) == (1, 1)  # the access log stays: the doors' audit trail
