"""The reward ledger: append-only entries, a balance that is their sum, and payouts.

Money moves only by inserting entries. Each entry names its source twice: the event it
came from (``source_event_id``) and the business fact (``source``, e.g. ``task:<id>``),
both unique, so neither a redelivered event nor a republished decision pays twice. The
kernel's processed-event inbox already drops redeliveries; the constraints are the
ledger's own guarantee, whatever delivers the event.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from common.db import Database
from common.events.envelope import utc_now
from common.events.outbox import UnitOfWork
from common.kernel import ServiceKernel
from contracts import PayoutStatusChanged, TaskConfirmed
from helper.models import Account, Binding, LedgerEntry, Payout, Task
from helper.tasks import record_decision

MIN_PAYOUT_KRW = 1_000
# Which state a payout may move to from which.
PAYOUT_MOVES = {"requested": {"approved", "rejected"}, "approved": {"paid", "rejected"}}
# A branch owner signs off on the work behind a payout (approve or reject a request);
# money leaves from head office, which alone marks a payout paid or undoes an approval.
OWNER_MOVES = {"requested": {"approved", "rejected"}}


class PayoutRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def _append(session: AsyncSession, is_sqlite: bool, **entry: object) -> bool:
    """Insert one entry unless its source is already there; True if it was new."""
    dialect_insert = sqlite.insert if is_sqlite else postgresql.insert
    inserted = await session.execute(
        dialect_insert(LedgerEntry)
        .values(created_at=utc_now(), **entry)
        .on_conflict_do_nothing()
        .returning(LedgerEntry.id)
    )
    return inserted.scalar() is not None


class Ledger:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def task_confirmed(self, event: TaskConfirmed, uow: UnitOfWork) -> None:
        approved = event.decision == "approved"
        if approved and event.reward_krw > 0:
            await _append(
                uow.session,
                self._database.is_sqlite,
                helper_id=event.helper_id,
                kind="task_reward",
                amount_krw=event.reward_krw,
                source=f"task:{event.task_id}",
                source_event_id=event.event_id,
                task_id=event.task_id,
            )
        await record_decision(
            uow.session, task_id=event.task_id, approved=approved, reason=event.reason, at=event.decided_at
        )


async def balance_of(database: Database, *, helper_id: uuid.UUID) -> int:
    async with database.sessions() as session:
        return await _balance(session, helper_id)


async def _balance(session: AsyncSession, helper_id: uuid.UUID) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_krw), 0)).where(LedgerEntry.helper_id == helper_id)
    )
    return int(total or 0)


async def history_of(
    database: Database, *, helper_id: uuid.UUID, limit: int, before_id: int | None = None
) -> Sequence[LedgerEntry]:
    query = select(LedgerEntry).where(LedgerEntry.helper_id == helper_id)
    if before_id is not None:
        query = query.where(LedgerEntry.id < before_id)
    async with database.sessions() as session:
        rows = await session.scalars(query.order_by(LedgerEntry.id.desc()).limit(limit))
        return rows.all()


async def request_payout(database: Database, *, helper_id: uuid.UUID, amount_krw: int, client_key: str) -> Payout:
    """Hold ``amount_krw`` of the balance for a payout (a debit entry). Requests of one
    helper serialise on their account row, so two cannot spend one balance."""
    if amount_krw < MIN_PAYOUT_KRW:
        raise PayoutRefused(422, f"the smallest payout is {MIN_PAYOUT_KRW} KRW")
    dialect_insert = sqlite.insert if database.is_sqlite else postgresql.insert
    async with database.transaction() as session:
        existing = await session.scalar(
            select(Payout).where(Payout.helper_id == helper_id, Payout.client_key == client_key)
        )
        if existing is not None:
            return existing
        await session.execute(dialect_insert(Account).values(helper_id=helper_id).on_conflict_do_nothing())
        await session.get(Account, helper_id, with_for_update=True)
        balance = await _balance(session, helper_id)
        if amount_krw > balance:
            raise PayoutRefused(409, f"balance is {balance} KRW")
        now = utc_now()
        payout = Payout(
            id=uuid.uuid4(),
            helper_id=helper_id,
            client_key=client_key,
            amount_krw=amount_krw,
            status="requested",
            requested_at=now,
            updated_at=now,
        )
        session.add(payout)
        await _append(
            session,
            database.is_sqlite,
            helper_id=helper_id,
            kind="payout",
            amount_krw=-amount_krw,
            source=f"payout:{payout.id}",
            payout_id=payout.id,
        )
    return payout


async def move_payout(
    kernel: ServiceKernel,
    *,
    payout_id: uuid.UUID,
    to: str,
    note: str | None,
    by: uuid.UUID,
    branch_id: str | None = None,
) -> Payout:
    """Move a payout and publish the move in the same transaction. With ``branch_id`` the
    caller is that branch's owner: the payout must be of a helper bound to the branch and
    the owner may only sign off on a request (OWNER_MOVES)."""
    async with kernel.unit_of_work() as uow:
        session = uow.session
        payout = await session.get(Payout, payout_id, with_for_update=True)
        if payout is None:
            raise PayoutRefused(404, "no such payout")
        moves = PAYOUT_MOVES
        if branch_id is not None:
            if await session.get(Binding, (payout.helper_id, branch_id)) is None:
                raise PayoutRefused(404, "no such payout of a helper of this branch")
            moves = OWNER_MOVES
            if to == "paid" or payout.status not in OWNER_MOVES:
                raise PayoutRefused(403, "head office pays and settles approved payouts; a branch approves requests")
        if to not in moves.get(payout.status, set()):
            raise PayoutRefused(409, f"a {payout.status} payout cannot become {to}")
        previous = payout.status
        payout.status, payout.note, payout.updated_at = to, note, utc_now()
        if to == "rejected":
            await _append(
                session,
                kernel.db.is_sqlite,
                helper_id=payout.helper_id,
                kind="payout_reversal",
                amount_krw=payout.amount_krw,
                source=f"payout-reversal:{payout.id}",
                payout_id=payout.id,
            )
        uow.emit(
            PayoutStatusChanged(
                payout_id=payout.id,
                helper_id=payout.helper_id,
                amount_krw=payout.amount_krw,
                previous_status=previous,
                status=to,
                note=note,
                changed_by=by,
                branch_id=branch_id,
                changed_at=payout.updated_at,
            )
        )
    return payout


async def payouts_of_branch(
    database: Database, *, branch_id: str, status: str | None, limit: int
) -> list[tuple[Payout, int]]:
    """Payouts of the helpers bound to the branch, newest first, each with what the
    helper has earned at this branch so far (the owner's basis for signing off)."""
    query = (
        select(Payout)
        .join(Binding, Binding.helper_id == Payout.helper_id)
        .where(Binding.branch_id == branch_id)
        .order_by(Payout.requested_at.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(Payout.status == status)
    async with database.sessions() as session:
        payouts = list((await session.scalars(query)).all())
        helpers = {payout.helper_id for payout in payouts}
        earned: dict[uuid.UUID, int] = {}
        if helpers:
            rows = await session.execute(
                select(LedgerEntry.helper_id, func.coalesce(func.sum(LedgerEntry.amount_krw), 0))
                .join(Task, Task.id == LedgerEntry.task_id)
                .where(
                    LedgerEntry.kind == "task_reward",
                    LedgerEntry.helper_id.in_(helpers),
                    Task.branch_id == branch_id,
                )
                .group_by(LedgerEntry.helper_id)
            )
            earned = {helper_id: int(total) for helper_id, total in rows.all()}
    return [(payout, earned.get(payout.helper_id, 0)) for payout in payouts]


async def payouts_of(database: Database, *, helper_id: uuid.UUID) -> Sequence[Payout]:
    async with database.sessions() as session:
        rows = await session.scalars(
            select(Payout).where(Payout.helper_id == helper_id).order_by(Payout.requested_at.desc()).limit(100)
        )
        return rows.all()
