"""The review queue: judged tasks waiting for the branch owner's word.

branch_owner keeps its own copy of each verdict (from TaskJudged), so the owner's console
never reads helper's database. The owner confirms or rejects; going against the AI's
outcome is an override and needs a reason. TaskConfirmed carries the final label and
whether the AI was overridden: helper pays on it, training learns from it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import and_, or_, select

from branch_owner.models import QueueItem
from common.db import Database
from common.events.envelope import utc_now
from common.events.outbox import UnitOfWork
from common.kernel import ServiceKernel
from contracts import TaskConfirmed, TaskJudgedV2, TaskReviewOverdue

Decision = Literal["approve", "reject"]


class DecisionRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def task_judged(event: TaskJudgedV2, uow: UnitOfWork) -> None:
    if await uow.session.get(QueueItem, event.task_id) is not None:
        return
    uow.session.add(
        QueueItem(
            task_id=event.task_id,
            branch_id=event.branch_id,
            helper_id=event.helper_id,
            task_type=event.task_type,
            title=event.title,
            reward_krw=event.reward_krw,
            photos=[photo.model_dump(mode="json") for photo in event.photos],
            submitted_at=event.submitted_at,
            judged_at=event.judged_at,
            outcome=event.outcome,
            confidence=event.confidence,
            reasons=[reason.model_dump() for reason in event.reasons],
            model_version=event.model_version,
            status="pending",
        )
    )


@dataclass(frozen=True)
class Cursor:
    judged_at: datetime
    task_id: uuid.UUID

    def encode(self) -> str:
        return f"{self.judged_at.isoformat()}_{self.task_id}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        moment, _, task = text.rpartition("_")
        return cls(datetime.fromisoformat(moment), uuid.UUID(task))


async def page(
    database: Database, *, branch_id: str, status: str, limit: int, after: Cursor | None = None
) -> Sequence[QueueItem]:
    """Oldest verdict first (the SLA's order), keyset-paged: the same cost on page 1,000."""
    query = select(QueueItem).where(QueueItem.branch_id == branch_id, QueueItem.status == status)
    if after is not None:
        query = query.where(
            or_(
                QueueItem.judged_at > after.judged_at,
                and_(QueueItem.judged_at == after.judged_at, QueueItem.task_id > after.task_id),
            )
        )
    async with database.sessions() as session:
        rows = await session.scalars(query.order_by(QueueItem.judged_at, QueueItem.task_id).limit(limit))
        return rows.all()


async def item(database: Database, *, task_id: uuid.UUID) -> QueueItem | None:
    async with database.sessions() as session:
        return await session.get(QueueItem, task_id)


def _overrides(decision: Decision, outcome: str) -> bool:
    return (decision == "approve" and outcome == "fail") or (decision == "reject" and outcome == "pass")


async def decide(
    kernel: ServiceKernel,
    *,
    branch_id: str,
    task_ids: Sequence[uuid.UUID],
    decision: Decision,
    reason: str,
    by: uuid.UUID,
) -> dict[uuid.UUID, str]:
    """Decide several tasks of one branch at once; per task "approved", "rejected" or why
    not. All decided tasks and their TaskConfirmed commit together."""
    results: dict[uuid.UUID, str] = {}
    now = utc_now()
    async with kernel.unit_of_work() as uow:
        rows = (
            await uow.session.scalars(select(QueueItem).where(QueueItem.task_id.in_(task_ids)).with_for_update())
        ).all()
        found = {row.task_id: row for row in rows}
        for task_id in task_ids:
            row = found.get(task_id)
            if row is None or row.branch_id != branch_id:
                results[task_id] = "not found in this branch's queue"
                continue
            if row.status != "pending":
                results[task_id] = f"already {row.status}"
                continue
            overridden = _overrides(decision, row.outcome)
            if (decision == "reject" or overridden) and not reason:
                results[task_id] = "a reason is needed to reject or to overrule the AI"
                continue
            row.status = "approved" if decision == "approve" else "rejected"
            row.decided_by, row.decided_at = by, now
            row.decision_reason, row.ai_overridden = reason or None, overridden
            uow.emit(
                TaskConfirmed(
                    task_id=row.task_id,
                    helper_id=row.helper_id,
                    branch_id=row.branch_id,
                    task_type=row.task_type,
                    decision=row.status,
                    final_label="done" if decision == "approve" else "not_done",
                    ai_outcome=row.outcome,
                    ai_overridden=overridden,
                    reason=reason,
                    reward_krw=row.reward_krw if decision == "approve" else 0,
                    decided_by=by,
                    decided_at=now,
                )
            )
            results[task_id] = row.status
    return results


async def remind_overdue(kernel: ServiceKernel, *, sla: timedelta, batch: int = 500) -> int:
    """One TaskReviewOverdue per task that has waited past the SLA (never a second)."""
    now = utc_now()
    async with kernel.unit_of_work() as uow:
        query = (
            select(QueueItem)
            .where(QueueItem.status == "pending", QueueItem.reminded_at.is_(None), QueueItem.judged_at < now - sla)
            .order_by(QueueItem.judged_at)
            .limit(batch)
        )
        if not kernel.db.is_sqlite:
            query = query.with_for_update(skip_locked=True)  # replicas share the sweep
        rows = (await uow.session.scalars(query)).all()
        for row in rows:
            row.reminded_at = now
            uow.emit(
                TaskReviewOverdue(
                    task_id=row.task_id,
                    helper_id=row.helper_id,
                    branch_id=row.branch_id,
                    task_type=row.task_type,
                    title=row.title,
                    judged_at=row.judged_at,
                    waited_s=(now - row.judged_at).total_seconds(),
                )
            )
    return len(rows)
