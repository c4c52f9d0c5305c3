"""A deleted account leaves no runs, tracks, share links, friendships or steps in running."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select

from common.events.envelope import OutgoingMessage
from contracts import UserDeleted
from running.models import Friendship, Run, RunChunk, ShareLink, StepCount


def rows_for(user_id: uuid.UUID, friend_id: uuid.UUID, now: datetime) -> list[object]:
    run_id = uuid.uuid4()
    return [
        Run(
            run_id=run_id,
            user_id=user_id,
            status="finished",
            source="live",
            title="morning",
            started_at=now,
            updated_at=now,
            distance_m=1000.0,
            moving_s=300.0,
            elapsed_s=300.0,
            summary={},
        ),
        RunChunk(run_id=run_id, first_t=0.0, points=[[0.0, 37.5, 127.0, 5.0, None, None]], created_at=now),
        ShareLink(
            token_hash=uuid.uuid4().hex * 2, run_id=run_id, created_by=user_id, expires_at=now + timedelta(days=1)
        ),
        Friendship(user_id=user_id, friend_id=friend_id, status="accepted", created_at=now),
        Friendship(user_id=friend_id, friend_id=user_id, status="accepted", created_at=now),
        StepCount(user_id=user_id, day=date.today(), device_id="watch", steps=4321, updated_at=now),
    ]


async def counts(running, user_id: uuid.UUID) -> dict[str, int]:
    async with running.app.state.kernel.db.sessions() as session:
        runs = select(Run.run_id).where(Run.user_id == user_id).scalar_subquery()
        queries = {
            "runs": select(func.count()).select_from(Run).where(Run.user_id == user_id),
            "chunks": select(func.count()).select_from(RunChunk).where(RunChunk.run_id.in_(runs)),
            "links": select(func.count()).select_from(ShareLink).where(ShareLink.created_by == user_id),
            "friendships": select(func.count())
            .select_from(Friendship)
            .where((Friendship.user_id == user_id) | (Friendship.friend_id == user_id)),
            "steps": select(func.count()).select_from(StepCount).where(StepCount.user_id == user_id),
        }
        return {name: int(await session.scalar(query) or 0) for name, query in queries.items()}


async def test_a_deleted_runner_is_forgotten(running):
    leaving, staying, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    async with running.app.state.kernel.db.transaction() as session:
        session.add_all(rows_for(leaving, staying, now))
        session.add_all(rows_for(staying, third, now))
    full = {"runs": 1, "chunks": 1, "links": 1, "friendships": 2, "steps": 1}
    assert await counts(running, leaving) == full

    deleted = UserDeleted(user_id=leaving)
    bus = running.app.state.kernel.bus
    # Redelivered, then repeated under a new id: the second and third change nothing.
    await bus.publish_many([OutgoingMessage.of(deleted), OutgoingMessage.of(deleted)])
    await bus.publish_many([OutgoingMessage.of(UserDeleted(user_id=leaving))])
    assert set((await counts(running, leaving)).values()) == {0}
    # The friend keeps their own run and their other friendship; only the one with the leaver went.
    assert await counts(running, staying) == full | {"friendships": 2}
    assert await counts(running, third) == {"runs": 0, "chunks": 0, "links": 0, "friendships": 2, "steps": 0}
