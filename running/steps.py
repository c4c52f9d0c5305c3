"""Steps: daily counts from phones and watches, and rankings among friends."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any, Literal

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.events.envelope import utc_now
from common.kernel import ServiceKernel
from contracts import StepRankChanged
from running.friends import friends_of
from running.models import StepCount


class StepService:
    def __init__(self, *, kernel: ServiceKernel) -> None:
        self._kernel = kernel

    async def upload_steps(self, *, user: uuid.UUID, day: date, device_id: str, steps: int) -> dict[str, Any]:
        """Idempotent per day and device (a re-upload replaces the count; a day's total is
        the largest device count, since a phone and a watch count the same steps)."""
        async with self._kernel.unit_of_work() as uow:
            session = uow.session
            friends = await friends_of(session, user=user)
            before = await _day_totals(session, [user, *friends], day)
            row = await session.get(StepCount, (user, day, device_id))
            if row is None:
                session.add(StepCount(user_id=user, day=day, device_id=device_id, steps=steps, updated_at=utc_now()))
            else:
                row.steps, row.updated_at = steps, utc_now()
            await session.flush()
            after = await _day_totals(session, [user, *friends], day)
            ranks_before, ranks_after = _ranks(before), _ranks(after)
            mine = after.get(user, 0)
            for friend in friends:
                theirs = before.get(friend, 0)
                # Only people who had walked that day are "overtaken" (not every friend at 0).
                if theirs > 0 and theirs >= before.get(user, 0) and after.get(friend, 0) < mine:
                    uow.emit(
                        StepRankChanged(
                            user_id=friend,
                            overtaken_by=user,
                            day=day,
                            new_rank=ranks_after[friend],
                            steps=mine,
                        )
                    )
        return {"day": day.isoformat(), "steps": mine, "rank": ranks_after[user], "was": ranks_before.get(user)}

    async def step_ranking(self, *, user: uuid.UUID, period: Literal["day", "week"], day: date) -> list[dict[str, Any]]:
        async with self._kernel.db.sessions() as session:
            friends = await friends_of(session, user=user)
            people = [user, *friends]
            first = day - timedelta(days=day.weekday()) if period == "week" else day
            last = first + timedelta(days=6) if period == "week" else day
            per_day = (
                select(StepCount.user_id, StepCount.day, func.max(StepCount.steps).label("steps"))
                .where(StepCount.user_id.in_(people), and_(StepCount.day >= first, StepCount.day <= last))
                .group_by(StepCount.user_id, StepCount.day)
                .subquery()
            )
            rows = await session.execute(
                select(per_day.c.user_id, func.sum(per_day.c.steps)).group_by(per_day.c.user_id)
            )
            totals = {person: 0 for person in people} | {person: int(steps) for person, steps in rows}
        ranks = _ranks(totals)
        return [
            {"user_id": str(person), "steps": totals[person], "rank": ranks[person], "me": person == user}
            for person in sorted(totals, key=lambda person: ranks[person])
        ]


async def _day_totals(session: AsyncSession, users: list[uuid.UUID], day: date) -> dict[uuid.UUID, int]:
    rows = await session.execute(
        select(StepCount.user_id, func.max(StepCount.steps))
        .where(StepCount.user_id.in_(users), StepCount.day == day)
        .group_by(StepCount.user_id)
    )
    return {user: int(steps) for user, steps in rows}


def _ranks(totals: dict[uuid.UUID, int]) -> dict[uuid.UUID, int]:
    """Competition ranking (1, 2, 2, 4): ties share a rank."""
    ordered = sorted(totals.values(), reverse=True)
    return {user: ordered.index(steps) + 1 for user, steps in totals.items()}
