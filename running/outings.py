"""Outings: friends walking or running together. The host invites friends; each accepts or
declines before the invitation expires; the host starts it; the group shares positions
until the host ends it, everyone has left, or its time is up."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select

from common.events.envelope import utc_now
from common.events.outbox import UnitOfWork
from common.kernel import ServiceKernel
from contracts import OutingEnded, OutingInvited, OutingStarted
from running.errors import Conflict, Forbidden, NotFound
from running.friends import friends_of
from running.models import Outing

EndReason = Literal["host_ended", "all_left", "time_up"]


def _answers(outing: Outing) -> dict[str, str]:
    # Outings from before invitations: every member counts as having accepted.
    return dict(outing.invites) if outing.invites is not None else dict.fromkeys(outing.members, "accepted")


class OutingService:
    def __init__(self, *, kernel: ServiceKernel, invite_for: timedelta = timedelta(minutes=30)) -> None:
        self._kernel = kernel
        self._invite_for = invite_for

    async def create_outing(
        self, *, owner: uuid.UUID, title: str, members: Sequence[uuid.UUID], minutes: int
    ) -> Outing:
        now = utc_now()
        invitees = [member for member in dict.fromkeys(members) if member != owner]
        async with self._kernel.unit_of_work() as uow:
            friends = set(await friends_of(uow.session, user=owner))
            if any(member not in friends for member in invitees):
                raise Forbidden("an outing is for friends")
            outing = Outing(
                outing_id=uuid.uuid4(),
                owner_id=owner,
                title=title,
                members=[str(member) for member in [owner, *invitees]],
                status="open",
                created_at=now,
                ends_at=now + timedelta(minutes=minutes),
                invites={str(owner): "accepted"} | {str(member): "invited" for member in invitees},
                invite_expires_at=min(now + self._invite_for, now + timedelta(minutes=minutes)),
            )
            uow.session.add(outing)
            assert outing.invite_expires_at is not None
            uow.emit(
                OutingInvited(
                    outing_id=outing.outing_id,
                    host_id=owner,
                    title=title,
                    invitees=tuple(invitees),
                    expires_at=outing.invite_expires_at,
                )
            )
        return outing

    async def answer(self, *, user: uuid.UUID, outing_id: uuid.UUID, accept: bool) -> Outing:
        """Accept or decline an invitation (until it expires; a decline may be changed)."""
        now = utc_now()
        async with self._kernel.db.sessions() as session, session.begin():
            outing = await session.get(Outing, outing_id, with_for_update=True)
            answers = _answers(outing) if outing is not None else {}
            if outing is None or str(user) not in answers:
                raise NotFound("no such outing of yours")
            if outing.status != "open" or outing.ends_at <= now:
                raise Conflict("the outing has ended")
            if answers[str(user)] in ("invited", "declined") and (
                outing.invite_expires_at is not None and outing.invite_expires_at <= now
            ):
                raise Conflict("the invitation has expired")
            if str(user) == str(outing.owner_id):
                raise Conflict("the host does not answer their own invitation")
            answers[str(user)] = "accepted" if accept else "declined"
            outing.invites = answers
        return outing

    async def start_outing(self, *, user: uuid.UUID, outing_id: uuid.UUID) -> Outing:
        now = utc_now()
        async with self._kernel.unit_of_work() as uow:
            outing = await uow.session.get(Outing, outing_id, with_for_update=True)
            if outing is None or outing.owner_id != user:
                raise NotFound("no such outing of yours")
            if outing.status != "open" or outing.ends_at <= now:
                raise Conflict("the outing has ended")
            if outing.started_at is None:
                outing.started_at = now
                accepted = [uuid.UUID(who) for who, answer in _answers(outing).items() if answer == "accepted"]
                uow.emit(
                    OutingStarted(
                        outing_id=outing_id, host_id=user, members=tuple(accepted), started_at=now, title=outing.title
                    )
                )
        return outing

    async def outing_for(self, *, user: uuid.UUID, outing_id: uuid.UUID) -> Outing:
        """The outing, if ``user`` may be in it now (the host, or a member who accepted)."""
        async with self._kernel.db.sessions() as session:
            outing = await session.get(Outing, outing_id)
        if outing is None or str(user) not in outing.members:
            raise NotFound("no such outing of yours")
        if outing.status != "open" or outing.ends_at <= utc_now():
            raise Conflict("the outing has ended")
        answer = _answers(outing).get(str(user))
        if answer == "invited":
            raise Forbidden("accept the invitation first")
        if answer in ("declined", "left"):
            raise Forbidden("you are not in this outing")
        return outing

    async def leave(self, *, user: uuid.UUID, outing_id: uuid.UUID) -> bool:
        """``user`` leaves; True when that was the last one in and the outing ended."""
        async with self._kernel.unit_of_work() as uow:
            outing = await uow.session.get(Outing, outing_id, with_for_update=True)
            if outing is None or str(user) not in outing.members:
                raise NotFound("no such outing of yours")
            if outing.status != "open":
                return False
            answers = _answers(outing)
            answers[str(user)] = "left"
            outing.invites = answers
            if any(answer == "accepted" for answer in answers.values()):
                return False
            self._end(uow, outing, "all_left")
            return True

    async def close_outing(self, *, user: uuid.UUID | None, outing_id: uuid.UUID) -> bool:
        """The host ends it (``user``), or its time ran out (None)."""
        async with self._kernel.unit_of_work() as uow:
            outing = await uow.session.get(Outing, outing_id, with_for_update=True)
            if outing is None or (user is not None and outing.owner_id != user):
                raise NotFound("no such outing of yours")
            if outing.status != "open":
                return False
            self._end(uow, outing, "host_ended" if user is not None else "time_up")
            return True

    @staticmethod
    def _end(uow: UnitOfWork, outing: Outing, reason: EndReason) -> None:
        outing.status = "closed"
        took_part = [uuid.UUID(who) for who, answer in _answers(outing).items() if answer in ("accepted", "left")]
        uow.emit(
            OutingEnded(
                outing_id=outing.outing_id,
                host_id=outing.owner_id,
                reason=reason,
                ended_at=utc_now(),
                members=tuple(took_part[:50]),
                title=outing.title,
            )
        )

    async def ended_outings(self) -> list[uuid.UUID]:
        async with self._kernel.db.sessions() as session:
            rows = await session.scalars(
                select(Outing.outing_id).where(Outing.status == "open", Outing.ends_at <= utc_now())
            )
            return list(rows)

    async def invitations(self, *, user: uuid.UUID) -> list[dict[str, object]]:
        """Open outings ``user`` is invited to or in."""
        now = utc_now()
        async with self._kernel.db.sessions() as session:
            rows = (await session.scalars(select(Outing).where(Outing.status == "open", Outing.ends_at > now))).all()
        mine = []
        for outing in rows:
            answer = _answers(outing).get(str(user))
            if answer is None:
                continue
            expired = answer == "invited" and outing.invite_expires_at is not None and outing.invite_expires_at <= now
            mine.append(
                {
                    "outing_id": str(outing.outing_id),
                    "title": outing.title,
                    "host_id": str(outing.owner_id),
                    "answer": "expired" if expired else answer,
                    "started": outing.started_at is not None,
                    "ends_at": _iso(outing.ends_at),
                }
            )
        return mine


def _iso(moment: datetime) -> str:
    return moment.isoformat()
