"""Friends: requests, acceptance (stored both ways) and the friend list other subdomains
consult (who may watch a run, whom a race or an outing may invite).

A member finds another by the friend code that one chose to give them, never by e-mail or
phone: running holds neither, and a lookup by them would tell anyone who knows an address
whether its owner has an account. A code is random (10 symbols, 50 bits), so a miss says
nothing about anybody, and misses are counted so that guessing stops after a few a day."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from common.events.envelope import utc_now
from common.events.outbox import UnitOfWork
from common.kernel import ServiceKernel
from contracts import FriendRequestAccepted
from running.errors import Conflict, NotFound, TooMany
from running.models import FriendCodeMiss, Friendship, Run, RunnerProfile
from running.profiles import display_names

# Crockford's base32: no I, L, O or U, so a code read out or typed by hand survives.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 10
MISSES_PER_DAY = 20


def normalise_code(typed: str) -> str:
    """A code as typed (any case, dashes and spaces, O for 0, I or L for 1) → its
    canonical form; ValueError if it cannot be one."""
    code = typed.upper().replace("-", "").replace(" ", "").translate(str.maketrans("OIL", "011"))
    if len(code) != CODE_LENGTH or any(symbol not in CODE_ALPHABET for symbol in code):
        raise ValueError(f"a friend code is {CODE_LENGTH} letters and digits, like ABCDE-12345")
    return code


def shown_code(code: str) -> str:
    return f"{code[:5]}-{code[5:]}"


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

    async def friend_code(self, *, user: uuid.UUID, renew: bool = False) -> str:
        """The member's code (issued on first ask); ``renew`` replaces it, so a code given
        too widely stops working."""
        async with self._kernel.db.sessions() as session, session.begin():
            profile = await session.get(RunnerProfile, user, with_for_update=True)
            if profile is None:
                profile = RunnerProfile(user_id=user, updated_at=utc_now())
                session.add(profile)
            if profile.friend_code is None or renew:
                # 50 bits among at most millions of members: a collision is not worth a retry loop.
                profile.friend_code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
                profile.updated_at = utc_now()
            return shown_code(profile.friend_code)

    async def request_by_code(self, *, user: uuid.UUID, code: str) -> dict[str, Any]:
        """Ask the holder of ``code`` to be friends (``code`` already normalised)."""
        today = utc_now().date()
        async with self._kernel.db.sessions() as session, session.begin():
            missed = await session.get(FriendCodeMiss, (user, today))
            if missed is not None and missed.misses >= MISSES_PER_DAY:
                raise TooMany("too many wrong friend codes today; try again tomorrow")
            other = await session.scalar(select(RunnerProfile.user_id).where(RunnerProfile.friend_code == code))
            if other is None:
                insert = sqlite.insert if session.get_bind().dialect.name == "sqlite" else postgresql.insert
                await session.execute(
                    insert(FriendCodeMiss)
                    .values(user_id=user, day=today, misses=1)
                    .on_conflict_do_update(
                        index_elements=["user_id", "day"], set_={"misses": FriendCodeMiss.misses + 1}
                    )
                )
        if other is None:
            raise NotFound("no runner has that friend code")
        status = await self.request_friend(user=user, other=other)
        async with self._kernel.db.sessions() as session:
            names = await _names(session, [other])
        return {"status": status, "user_id": other, "name": names[other]}

    async def remove_friend(self, *, user: uuid.UUID, other: uuid.UUID) -> None:
        async with self._kernel.db.sessions() as session, session.begin():
            await session.execute(
                delete(Friendship).where(
                    ((Friendship.user_id == user) & (Friendship.friend_id == other))
                    | ((Friendship.user_id == other) & (Friendship.friend_id == user))
                )
            )

    async def friendships(self, *, user: uuid.UUID) -> dict[str, Any]:
        """Friends, requests either way, the names each chose, and which friends are out
        on a live run now (a friend may watch it)."""
        async with self._kernel.db.sessions() as session:
            outgoing = (await session.scalars(select(Friendship).where(Friendship.user_id == user))).all()
            incoming = (
                await session.scalars(
                    select(Friendship).where(Friendship.friend_id == user, Friendship.status == "requested")
                )
            ).all()
            friends = [row.friend_id for row in outgoing if row.status == "accepted"]
            requested = [row.friend_id for row in outgoing if row.status == "requested"]
            asking = [row.user_id for row in incoming]
            names = await _names(session, [*friends, *requested, *asking])
            live = (
                await session.execute(
                    select(Run.user_id, Run.run_id)
                    .where(Run.user_id.in_(friends), Run.status == "live")
                    .order_by(Run.started_at)
                )
            ).all()
        return {
            "friends": friends,
            "requested": requested,
            "incoming": asking,
            "names": {str(who): name for who, name in names.items()},
            "live": {str(who): run_id for who, run_id in live},  # the latest run wins
        }


async def _names(session: AsyncSession, users: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The name each chose, or the neutral one boards show (never an e-mail)."""
    chosen = await display_names(session, users=users) if users else {}
    return {user: chosen.get(user) or f"Runner {str(user)[:4].upper()}" for user in users}


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
