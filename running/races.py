"""Races between friends: invitations, the start (a countdown or a scheduled time), each
racer's finish and the results, published once when the last racer is done."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from common.events.envelope import utc_now
from common.kernel import ServiceKernel
from contracts import RaceFinished, RacePlacing
from running.errors import Conflict, Forbidden, NotFound
from running.friends import friends_of
from running.models import Race, RaceEntry
from running.settings import RunningSettings

DISTANCE_RACE_LIMIT = timedelta(hours=6)


@dataclass(frozen=True)
class RaceInfo:
    race_id: uuid.UUID
    mode: Literal["distance", "time"]
    target: float
    start_at: float


def race_mode(race: Race) -> Literal["distance", "time"]:
    return "time" if race.mode == "time" else "distance"


def race_info(race: Race) -> RaceInfo:
    assert race.start_at is not None, "only a started race has a clock"
    return RaceInfo(race.race_id, race_mode(race), race.target, race.start_at.timestamp())


async def enter_race(
    session: AsyncSession, *, race_id: uuid.UUID, user: uuid.UUID, run_id: uuid.UUID, now: datetime
) -> RaceInfo:
    """The racer's run joins the race (in the transaction that creates the run)."""
    race = await session.get(Race, race_id)
    entry = await session.get(RaceEntry, (race_id, user))
    if race is None or entry is None or entry.status == "invited":
        raise Forbidden("join the race first")
    if race.status == "open" and race.start_at is not None and race.start_at <= now + timedelta(seconds=60):
        race.status = "running"  # a scheduled start has come
    if race.status != "running" or race.start_at is None:
        raise Conflict("the race has not started" if race.status == "open" else "the race is over")
    if entry.run_id is not None and entry.status == "finished":
        raise Conflict("you have finished this race")
    entry.run_id = run_id
    return race_info(race)


async def race_of_run(session: AsyncSession, *, race_id: uuid.UUID) -> RaceInfo | None:
    race = await session.get(Race, race_id)
    return race_info(race) if race is not None and race.start_at is not None else None


class RaceService:
    def __init__(self, *, kernel: ServiceKernel, settings: RunningSettings) -> None:
        self._kernel = kernel
        self._settings = settings

    async def create_race(
        self,
        *,
        host: uuid.UUID,
        title: str,
        mode: Literal["distance", "time"],
        target: float,
        invite: Sequence[uuid.UUID],
        start_at: datetime | None,
    ) -> Race:
        now = utc_now()
        race = Race(
            race_id=uuid.uuid4(),
            host_id=host,
            title=title,
            mode=mode,
            target=target,
            status="open",
            start_at=start_at,
            created_at=now,
        )
        async with self._kernel.db.sessions() as session, session.begin():
            friends = set(await friends_of(session, user=host))
            strangers = [user for user in invite if user not in friends]
            if strangers:
                raise Forbidden("you can only invite friends")
            session.add(race)
            session.add(RaceEntry(race_id=race.race_id, user_id=host, status="joined"))
            for user in dict.fromkeys(invite):
                session.add(RaceEntry(race_id=race.race_id, user_id=user, status="invited"))
        return race

    async def join_race(self, *, user: uuid.UUID, race_id: uuid.UUID) -> None:
        async with self._kernel.db.sessions() as session, session.begin():
            entry = await session.get(RaceEntry, (race_id, user))
            race = await session.get(Race, race_id)
            if entry is None or race is None:
                raise NotFound("you are not invited to this race")
            if race.status == "finished":
                raise Conflict("the race is over")
            if entry.status == "invited":
                entry.status = "joined"

    async def start_race(self, *, user: uuid.UUID, race_id: uuid.UUID) -> Race:
        async with self._kernel.db.sessions() as session, session.begin():
            race = await session.get(Race, race_id)
            if race is None:
                raise NotFound("no such race")
            if race.host_id != user:
                raise Forbidden("only the host starts the race")
            if race.status != "open":
                raise Conflict(f"the race is {race.status}")
            race.status = "running"
            race.start_at = utc_now() + timedelta(seconds=self._settings.running_race_countdown_s)
        return race

    async def race(self, *, viewer: uuid.UUID, race_id: uuid.UUID) -> tuple[Race, Sequence[RaceEntry]]:
        async with self._kernel.db.sessions() as session:
            race = await session.get(Race, race_id)
            entries = (await session.scalars(select(RaceEntry).where(RaceEntry.race_id == race_id))).all()
        if race is None or viewer not in {entry.user_id for entry in entries}:
            raise NotFound("no such race of yours")
        return race, entries

    async def record_finish(
        self,
        *,
        race_id: uuid.UUID,
        user: uuid.UUID,
        distance_m: float,
        finish_s: float | None,
        chip_s: float | None = None,
    ) -> list[dict[str, Any]] | None:
        """The runner crossed the line (or the clock ran out): store it; when it was the last
        one, close the race and return its placings (exactly one replica does)."""
        async with self._kernel.db.sessions() as session, session.begin():
            await session.execute(
                update(RaceEntry)
                .where(RaceEntry.race_id == race_id, RaceEntry.user_id == user)
                .values(status="finished", finish_s=finish_s, chip_s=chip_s, distance_m=distance_m)
            )
            waiting = await session.scalar(
                select(func.count())
                .select_from(RaceEntry)
                .where(RaceEntry.race_id == race_id, RaceEntry.status == "joined")
            )
        if waiting:
            return None
        return await self.close_race(race_id=race_id)

    async def close_race(self, *, race_id: uuid.UUID) -> list[dict[str, Any]] | None:
        """Rank and close a running race; its placings (JSON-ready), or None when another
        replica closed it first."""
        now = utc_now()
        async with self._kernel.unit_of_work() as uow:
            claimed = await uow.session.execute(
                update(Race)
                .where(Race.race_id == race_id, Race.status == "running")
                .values(status="finished", finished_at=now)
            )
            if not getattr(claimed, "rowcount", 0):
                return None  # another replica closed it
            race = await uow.session.get(Race, race_id)
            assert race is not None
            entries = (
                await uow.session.scalars(
                    select(RaceEntry).where(RaceEntry.race_id == race_id, RaceEntry.status != "invited")
                )
            ).all()
            finishers = [entry for entry in entries if entry.status == "finished" and entry.finish_s is not None]
            if race.mode == "distance":
                # finish_s is gun time (from the race's start), so a late starter carries
                # the seconds they missed, and a stop costs what it costs on a real course.
                ranked = sorted(finishers, key=lambda entry: entry.finish_s or 0.0)
            else:  # fixed time: the furthest wins
                ranked = sorted(finishers, key=lambda entry: -entry.distance_m)
            others = sorted((entry for entry in entries if entry not in ranked), key=lambda entry: -entry.distance_m)
            placings = []
            for rank, entry in enumerate(ranked, start=1):
                entry.rank = rank
                placings.append(
                    RacePlacing(
                        user_id=entry.user_id,
                        rank=rank,
                        distance_m=entry.distance_m,
                        finish_s=entry.finish_s,
                        chip_s=_non_negative(entry.chip_s),
                    )
                )
            placings += [RacePlacing(user_id=entry.user_id, rank=None, distance_m=entry.distance_m) for entry in others]
            uow.emit(
                RaceFinished(
                    race_id=race_id,
                    mode=race_mode(race),
                    target=race.target,
                    finished_at=now,
                    placings=tuple(placings),
                )
            )
        return [placing.model_dump(mode="json") for placing in placings]

    async def overdue_races(self) -> list[uuid.UUID]:
        """Running races past their end (time races) or past the limit (distance races)."""
        now = utc_now()
        async with self._kernel.db.sessions() as session:
            races = (await session.scalars(select(Race).where(Race.status == "running"))).all()
        overdue = []
        for race in races:
            if race.start_at is None:
                continue
            limit = timedelta(seconds=race.target + 60) if race.mode == "time" else DISTANCE_RACE_LIMIT
            if race.start_at + limit < now:
                overdue.append(race.race_id)
        return overdue


def _non_negative(seconds: float | None) -> float | None:
    # A first point stamped a hair after the crossing (clock jitter) is no negative time.
    return None if seconds is None else max(seconds, 0.0)
