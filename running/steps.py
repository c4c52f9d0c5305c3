"""Steps: daily counts from phones and watches, and rankings among friends."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any, Literal

from sqlalchemy import and_, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.events.envelope import utc_now
from common.events.outbox import UnitOfWork
from common.kernel import ServiceKernel
from contracts import StepGoalReached, StepRankChanged
from running.errors import Forbidden, NotFound
from running.friends import friends_of
from running.models import StepCount, StepGoal, StepGoalMember, StepGoalReachedMark
from running.profiles import display_names


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
            await self._check_goals(uow, user=user, day=day)
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
            # Friends see each other's chosen names already (live runs); a ranking of ids means nothing.
            names = await display_names(session, users=people)
        ranks = _ranks(totals)
        return [
            {
                "user_id": str(person),
                "name": names.get(person) or f"Runner {str(person)[:4].upper()}",
                "steps": totals[person],
                "rank": ranks[person],
                "me": person == user,
            }
            for person in sorted(totals, key=lambda person: ranks[person])
        ]

    # -- shared goals -----------------------------------------------------------------------

    async def create_goal(
        self, *, owner: uuid.UUID, title: str, members: list[uuid.UUID], period: Literal["day", "week"], target: int
    ) -> dict[str, Any]:
        async with self._kernel.db.sessions() as session, session.begin():
            friends = set(await friends_of(session, user=owner))
            others = [member for member in dict.fromkeys(members) if member != owner]
            if any(member not in friends for member in others):
                raise Forbidden("a shared goal is for friends")
            goal = StepGoal(
                goal_id=uuid.uuid4(), owner_id=owner, title=title, period=period, target=target, created_at=utc_now()
            )
            session.add(goal)
            for member in [owner, *others]:
                session.add(StepGoalMember(goal_id=goal.goal_id, user_id=member))
        return await self.goal(user=owner, goal_id=goal.goal_id, day=utc_now().date())

    async def goal(self, *, user: uuid.UUID, goal_id: uuid.UUID, day: date) -> dict[str, Any]:
        async with self._kernel.db.sessions() as session:
            goal = await session.get(StepGoal, goal_id)
            members = list(
                await session.scalars(select(StepGoalMember.user_id).where(StepGoalMember.goal_id == goal_id))
            )
            if goal is None or user not in members:
                raise NotFound("no such goal of yours")
            first, last = _period(goal.period, day)
            totals = await _range_totals(session, members, first, last)
            reached = await session.get(StepGoalReachedMark, (goal_id, first))
        steps = sum(totals.values())
        return {
            "goal_id": str(goal_id),
            "title": goal.title,
            "period": goal.period,
            "period_start": first.isoformat(),
            "target": goal.target,
            "steps": steps,
            "progress": round(min(1.0, steps / goal.target), 3),
            "reached": reached is not None,
            "members": [{"user_id": str(member), "steps": totals.get(member, 0)} for member in members],
        }

    async def goals(self, *, user: uuid.UUID, day: date) -> list[dict[str, Any]]:
        async with self._kernel.db.sessions() as session:
            ids = list(await session.scalars(select(StepGoalMember.goal_id).where(StepGoalMember.user_id == user)))
        return [await self.goal(user=user, goal_id=goal_id, day=day) for goal_id in ids]

    async def _check_goals(self, uow: UnitOfWork, *, user: uuid.UUID, day: date) -> None:
        """Every goal of ``user`` that this upload completes for its period: marked once (a
        savepoint, so two members crossing at once give one event) and announced."""
        session = uow.session
        goals = (
            await session.scalars(
                select(StepGoal)
                .join(StepGoalMember, StepGoalMember.goal_id == StepGoal.goal_id)
                .where(StepGoalMember.user_id == user)
            )
        ).all()
        for goal in goals:
            first, last = _period(goal.period, day)
            if await session.get(StepGoalReachedMark, (goal.goal_id, first)) is not None:
                continue
            members = list(
                await session.scalars(select(StepGoalMember.user_id).where(StepGoalMember.goal_id == goal.goal_id))
            )
            steps = sum((await _range_totals(session, members, first, last)).values())
            if steps < goal.target:
                continue
            try:
                async with session.begin_nested():
                    session.add(StepGoalReachedMark(goal_id=goal.goal_id, period_start=first, reached_at=utc_now()))
            except IntegrityError:
                continue  # another member's upload marked it a moment ago
            uow.emit(
                StepGoalReached(
                    goal_id=goal.goal_id,
                    title=goal.title,
                    members=tuple(members),
                    period="week" if goal.period == "week" else "day",
                    period_start=first,
                    target=goal.target,
                    steps=steps,
                )
            )

    # -- statistics ---------------------------------------------------------------------------

    async def statistics(self, *, user: uuid.UUID, day: date, streak_min: int) -> dict[str, Any]:
        """The week and month of ``day``, and streaks of days with at least ``streak_min``."""
        year_ago = day - timedelta(days=365)
        async with self._kernel.db.sessions() as session:
            rows = await session.execute(
                select(StepCount.day, func.max(StepCount.steps))
                .where(StepCount.user_id == user, StepCount.day >= year_ago, StepCount.day <= day)
                .group_by(StepCount.day)
            )
            daily = {row_day: int(steps) for row_day, steps in rows}
        week_first, _ = _period("week", day)
        month_first = day.replace(day=1)
        month = [steps for row_day, steps in daily.items() if row_day >= month_first]
        # Today may still be under way: a streak ending yesterday is still alive.
        cursor = day if daily.get(day, 0) >= streak_min else day - timedelta(days=1)
        current = 0
        while daily.get(cursor, 0) >= streak_min:
            current, cursor = current + 1, cursor - timedelta(days=1)
        longest = run = 0
        for offset in range(366):
            if daily.get(year_ago + timedelta(days=offset), 0) >= streak_min:
                run += 1
                longest = max(longest, run)
            else:
                run = 0
        return {
            "day": day.isoformat(),
            "week": {"from": week_first.isoformat(), "steps": sum(s for d, s in daily.items() if d >= week_first)},
            "month": {
                "from": month_first.isoformat(),
                "steps": sum(month),
                "daily_average": round(sum(month) / ((day - month_first).days + 1)),
            },
            "streak": {"min_steps": streak_min, "current_days": current, "longest_days": longest},
        }


def _period(period: str, day: date) -> tuple[date, date]:
    if period == "week":
        first = day - timedelta(days=day.weekday())
        return first, first + timedelta(days=6)
    return day, day


async def _range_totals(session: AsyncSession, users: list[uuid.UUID], first: date, last: date) -> dict[uuid.UUID, int]:
    per_day = (
        select(StepCount.user_id, StepCount.day, func.max(StepCount.steps).label("steps"))
        .where(StepCount.user_id.in_(users), StepCount.day >= first, StepCount.day <= last)
        .group_by(StepCount.user_id, StepCount.day)
        .subquery()
    )
    rows = await session.execute(select(per_day.c.user_id, func.sum(per_day.c.steps)).group_by(per_day.c.user_id))
    return {person: int(steps) for person, steps in rows}


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
