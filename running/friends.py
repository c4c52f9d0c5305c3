"""Friends: requests, acceptance (stored both ways) and the friend list other subdomains
consult (who may watch a run, whom a race or an outing may invite)."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.events.envelope import utc_now
from common.events.outbox import UnitOfWork
from common.kernel import ServiceKernel
from contracts import FriendRequestAccepted
from running.errors import Conflict, NotFound
from running.models import Friendship


async def friends_of(session: AsyncSession, *, user: uuid.UUID) -> list[uuid.UUID]:
    rows = await session.scalars(
        select(Friendship.friend_id).where(Friendship.user_id == user, Friendship.status == "accepted")
    )
    return list(rows)


async def is_friend(session: AsyncSession, *, user: uuid.UUID, of: uuid.UUID) -> bool:
    row = await session.get(Friendship, (of, user))
    return row is not None and row.status == "accepted"


class FriendService:
    def __init__(self, *, kernel: ServiceKernel) -> None:
        self._kernel = kernel

    async def request_friend(self, *, user: uuid.UUID, other: uuid.UUID) -> str:
        if user == other:
            raise Conflict("you cannot befriend yourself")
        async with self._kernel.unit_of_work() as uow:
            session = uow.session
            mine = await session.get(Friendship, (user, other))
            if mine is not None:
                return mine.status
            theirs = await session.get(Friendship, (other, user))
            if theirs is not None and theirs.status == "requested":
                # They asked first: asking back is accepting.
                await _accept(uow, requester=other, accepter=user)
                return "accepted"
            session.add(Friendship(user_id=user, friend_id=other, status="requested", created_at=utc_now()))
            return "requested"

    async def accept_friend(self, *, user: uuid.UUID, requester: uuid.UUID) -> None:
        async with self._kernel.unit_of_work() as uow:
            request = await uow.session.get(Friendship, (requester, user))
            if request is None:
                raise NotFound("no friend request from that user")
            if request.status != "accepted":
                await _accept(uow, requester=requester, accepter=user)

    async def remove_friend(self, *, user: uuid.UUID, other: uuid.UUID) -> None:
        async with self._kernel.db.sessions() as session, session.begin():
            await session.execute(
                delete(Friendship).where(
                    ((Friendship.user_id == user) & (Friendship.friend_id == other))
                    | ((Friendship.user_id == other) & (Friendship.friend_id == user))
                )
            )

    async def friendships(self, *, user: uuid.UUID) -> dict[str, list[uuid.UUID]]:
        async with self._kernel.db.sessions() as session:
            outgoing = (await session.scalars(select(Friendship).where(Friendship.user_id == user))).all()
            incoming = (
                await session.scalars(
                    select(Friendship).where(Friendship.friend_id == user, Friendship.status == "requested")
                )
            ).all()
        return {
            "friends": [row.friend_id for row in outgoing if row.status == "accepted"],
            "requested": [row.friend_id for row in outgoing if row.status == "requested"],
            "incoming": [row.user_id for row in incoming],
        }


async def _accept(uow: UnitOfWork, *, requester: uuid.UUID, accepter: uuid.UUID) -> None:
    session = uow.session
    request = await session.get(Friendship, (requester, accepter))
    assert request is not None
    request.status = "accepted"
    reverse = await session.get(Friendship, (accepter, requester))
    if reverse is None:
        session.add(Friendship(user_id=accepter, friend_id=requester, status="accepted", created_at=utc_now()))
    else:
        reverse.status = "accepted"
    uow.emit(FriendRequestAccepted(user_id=requester, friend_id=accepter, accepted_at=utc_now()))
