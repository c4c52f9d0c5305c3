"""Outings: a small group of friends walking or running together, sharing positions
until the outing ends."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select

from common.events.envelope import utc_now
from common.kernel import ServiceKernel
from running.errors import Conflict, Forbidden, NotFound
from running.friends import friends_of
from running.models import Outing


class OutingService:
    def __init__(self, *, kernel: ServiceKernel) -> None:
        self._kernel = kernel

    async def create_outing(
        self, *, owner: uuid.UUID, title: str, members: Sequence[uuid.UUID], minutes: int
    ) -> Outing:
        now = utc_now()
        async with self._kernel.db.sessions() as session, session.begin():
            friends = set(await friends_of(session, user=owner))
            if any(member not in friends for member in members):
                raise Forbidden("an outing is for friends")
            outing = Outing(
                outing_id=uuid.uuid4(),
                owner_id=owner,
                title=title,
                members=[str(member) for member in dict.fromkeys([owner, *members])],
                status="open",
                created_at=now,
                ends_at=now + timedelta(minutes=minutes),
            )
            session.add(outing)
        return outing

    async def outing_for(self, *, user: uuid.UUID, outing_id: uuid.UUID) -> Outing:
        async with self._kernel.db.sessions() as session:
            outing = await session.get(Outing, outing_id)
        if outing is None or str(user) not in outing.members:
            raise NotFound("no such outing of yours")
        if outing.status != "open" or outing.ends_at <= utc_now():
            raise Conflict("the outing has ended")
        return outing

    async def close_outing(self, *, user: uuid.UUID | None, outing_id: uuid.UUID) -> bool:
        async with self._kernel.db.sessions() as session, session.begin():
            outing = await session.get(Outing, outing_id)
            if outing is None or (user is not None and outing.owner_id != user):
                raise NotFound("no such outing of yours")
            was_open = outing.status == "open"
            outing.status = "closed"
        return was_open

    async def ended_outings(self) -> list[uuid.UUID]:
        async with self._kernel.db.sessions() as session:
            rows = await session.scalars(
                select(Outing.outing_id).where(Outing.status == "open", Outing.ends_at <= utc_now())
            )
            return list(rows)
