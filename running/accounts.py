"""What running forgets when a member deletes their account (no web framework here)."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.events.outbox import UnitOfWork
from contracts import UserDeleted
from running.models import FriendCodeMiss, Friendship, Run, RunChunk, RunnerProfile, ShareLink, StepCount


async def user_deleted(event: UserDeleted, uow: UnitOfWork) -> None:
    await forget_user(uow.session, user_id=event.user_id)


async def forget_user(session: AsyncSession, *, user_id: uuid.UUID) -> None:
    """Delete the member's runs with their raw points, every link sharing them, their
        friendships in both directions, their step counts and their profile (the name and the
    friend code others found them by). Safe to repeat: a second copy
        of the event finds nothing left."""
    runs = select(Run.run_id).where(Run.user_id == user_id).scalar_subquery()
    await session.execute(delete(ShareLink).where(or_(ShareLink.created_by == user_id, ShareLink.run_id.in_(runs))))
    await session.execute(delete(RunChunk).where(RunChunk.run_id.in_(runs)))
    await session.execute(delete(Run).where(Run.user_id == user_id))
    await session.execute(delete(Friendship).where(or_(Friendship.user_id == user_id, Friendship.friend_id == user_id)))
    await session.execute(delete(StepCount).where(StepCount.user_id == user_id))
    await session.execute(delete(RunnerProfile).where(RunnerProfile.user_id == user_id))
    await session.execute(delete(FriendCodeMiss).where(FriendCodeMiss.user_id == user_id))
