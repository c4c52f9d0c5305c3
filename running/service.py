"""running's domain: runs, friends, shared links, races, outings and steps (no web
framework, no broker code here)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from common.events.envelope import utc_now
from common.kernel import ServiceKernel
from common.security import secret_digest
from contracts import RaceFinished, RacePlacing, RunFinished, RunStarted, StepRankChanged
from running import analysis
from running.models import Friendship, Outing, Race, RaceEntry, Run, RunChunk, ShareLink, StepCount
from running.settings import RunningSettings
from running.track import GpsPoint, LiveTrack

MAX_FRIENDS_TOLD = 1000
DISTANCE_RACE_LIMIT = timedelta(hours=6)


class NotFound(Exception):
    pass


class Forbidden(Exception):
    pass


class Conflict(Exception):
    pass


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _point_row(point: GpsPoint) -> list[float | None]:
    return [point.t, point.lat, point.lon, point.acc, point.alt, point.hr]


def _point_of(row: Sequence[float | None]) -> GpsPoint:
    t, lat, lon, acc, alt, hr = row
    return GpsPoint.model_validate({"t": t, "lat": lat, "lon": lon, "acc": acc, "alt": alt, "hr": hr})


@dataclass(frozen=True)
class RaceInfo:
    race_id: uuid.UUID
    mode: Literal["distance", "time"]
    target: float
    start_at: float


def _mode(race: Race) -> Literal["distance", "time"]:
    return "time" if race.mode == "time" else "distance"


def _race_info(race: Race) -> RaceInfo:
    assert race.start_at is not None, "only a started race has a clock"
    return RaceInfo(race.race_id, _mode(race), race.target, _ts(race.start_at))


@dataclass
class LiveRun:
    """A run being streamed to this replica."""

    run_id: uuid.UUID
    user_id: uuid.UUID
    track: LiveTrack
    race: RaceInfo | None = None
    pending: list[GpsPoint] = field(default_factory=list)
    race_finished: bool = False


class RunningService:
    def __init__(self, kernel: ServiceKernel, settings: RunningSettings) -> None:
        self._kernel = kernel
        self._settings = settings

    # -- friends --------------------------------------------------------------------------

    async def request_friend(self, user: uuid.UUID, other: uuid.UUID) -> str:
        if user == other:
            raise Conflict("you cannot befriend yourself")
        async with self._kernel.db.sessions() as session, session.begin():
            mine = await session.get(Friendship, (user, other))
            if mine is not None:
                return mine.status
            theirs = await session.get(Friendship, (other, user))
            if theirs is not None and theirs.status == "requested":
                # They asked first: asking back is accepting.
                await self._accept(session, requester=other, accepter=user)
                return "accepted"
            session.add(Friendship(user_id=user, friend_id=other, status="requested", created_at=utc_now()))
            return "requested"

    async def accept_friend(self, user: uuid.UUID, requester: uuid.UUID) -> None:
        async with self._kernel.db.sessions() as session, session.begin():
            request = await session.get(Friendship, (requester, user))
            if request is None:
                raise NotFound("no friend request from that user")
            if request.status != "accepted":
                await self._accept(session, requester=requester, accepter=user)

    @staticmethod
    async def _accept(session: AsyncSession, *, requester: uuid.UUID, accepter: uuid.UUID) -> None:
        request = await session.get(Friendship, (requester, accepter))
        assert request is not None
        request.status = "accepted"
        reverse = await session.get(Friendship, (accepter, requester))
        if reverse is None:
            session.add(Friendship(user_id=accepter, friend_id=requester, status="accepted", created_at=utc_now()))
        else:
            reverse.status = "accepted"

    async def remove_friend(self, user: uuid.UUID, other: uuid.UUID) -> None:
        async with self._kernel.db.sessions() as session, session.begin():
            await session.execute(
                delete(Friendship).where(
                    ((Friendship.user_id == user) & (Friendship.friend_id == other))
                    | ((Friendship.user_id == other) & (Friendship.friend_id == user))
                )
            )

    async def friendships(self, user: uuid.UUID) -> dict[str, list[uuid.UUID]]:
        async with self._kernel.db.sessions() as session:
            outgoing = (await session.execute(select(Friendship).where(Friendship.user_id == user))).scalars().all()
            incoming = (
                (
                    await session.execute(
                        select(Friendship).where(Friendship.friend_id == user, Friendship.status == "requested")
                    )
                )
                .scalars()
                .all()
            )
        return {
            "friends": [row.friend_id for row in outgoing if row.status == "accepted"],
            "requested": [row.friend_id for row in outgoing if row.status == "requested"],
            "incoming": [row.user_id for row in incoming],
        }

    async def friends_of(self, session: AsyncSession, user: uuid.UUID) -> list[uuid.UUID]:
        rows = await session.scalars(
            select(Friendship.friend_id).where(Friendship.user_id == user, Friendship.status == "accepted")
        )
        return list(rows)

    async def are_friends(self, a: uuid.UUID, b: uuid.UUID) -> bool:
        async with self._kernel.db.sessions() as session:
            row = await session.get(Friendship, (a, b))
        return row is not None and row.status == "accepted"

    # -- live runs ------------------------------------------------------------------------

    async def start_run(self, user: uuid.UUID, *, race_id: uuid.UUID | None = None, title: str = "") -> LiveRun:
        now = utc_now()
        run_id = uuid.uuid4()
        race: RaceInfo | None = None
        async with self._kernel.unit_of_work() as uow:
            session = uow.session
            if race_id is not None:
                race = await self._enter_race(session, race_id, user, run_id, now)
            session.add(
                Run(
                    run_id=run_id,
                    user_id=user,
                    status="live",
                    source="live",
                    title=title or f"Run on {now:%Y-%m-%d}",
                    started_at=now,
                    race_id=race_id,
                    summary={},
                    updated_at=now,
                )
            )
            friends = await self.friends_of(session, user)
            uow.emit(
                RunStarted(
                    run_id=run_id,
                    user_id=user,
                    started_at=now,
                    race_id=race_id,
                    friends=tuple(friends[:MAX_FRIENDS_TOLD]),
                )
            )
        return LiveRun(run_id, user, self._new_track(_ts(now), race), race)

    async def resume_run(self, user: uuid.UUID, run_id: uuid.UUID) -> LiveRun:
        """Pick up a live run after a reconnect, possibly on another replica: the track is
        rebuilt from the stored points."""
        async with self._kernel.db.sessions() as session:
            run = await session.get(Run, run_id)
            if run is None or run.user_id != user:
                raise NotFound("no such run of yours")
            if run.status != "live":
                raise Conflict("this run is finished")
            race = None
            if run.race_id is not None:
                found = await session.get(Race, run.race_id)
                if found is not None and found.start_at is not None:
                    race = _race_info(found)
            points = await self._points(session, run_id)
        track = self._new_track(_ts(run.started_at), race)
        latest = max((point.t for point in points), default=0.0)
        for point in points:
            track.add(point, now=latest)
        return LiveRun(run_id, user, track, race)

    def _new_track(self, started_at: float, race: RaceInfo | None = None) -> LiveTrack:
        return LiveTrack(
            started_at=started_at,
            reorder_window_s=self._settings.running_reorder_window_s,
            max_future_s=self._settings.running_max_future_s,
            not_before=race.start_at if race else None,
        )

    async def save_points(self, runs: Sequence[LiveRun]) -> int:
        """One transaction for every run's new points: a chunk row per run, not a row per
        point, plus each run's (and race entry's) progress."""
        batches = [(run, run.pending) for run in runs if run.pending]
        if not batches:
            return 0
        for run, _ in batches:
            run.pending = []
        now = utc_now()
        chunks = [
            {"run_id": run.run_id, "first_t": points[0].t, "points": [_point_row(p) for p in points], "created_at": now}
            for run, points in batches
        ]
        progress = [
            {
                "run_id": run.run_id,
                "distance_m": run.track.distance_m,
                "moving_s": run.track.moving_s,
                "elapsed_s": run.track.elapsed_s(),
                "updated_at": now,
            }
            for run, _ in batches
        ]
        racing = [
            {"race_id": run.race.race_id, "user_id": run.user_id, "distance_m": run.track.distance_m}
            for run, _ in batches
            if run.race is not None
        ]
        try:
            # Executemany statements: a flush of two thousand runs is three round trips.
            async with self._kernel.db.sessions() as session, session.begin():
                await session.execute(insert(RunChunk), chunks)
                await session.execute(update(Run), progress)
                if racing:
                    await session.execute(update(RaceEntry), racing)
        except Exception:
            for run, points in batches:  # keep them for the next flush
                run.pending = points + run.pending
            raise
        return sum(len(points) for _, points in batches)

    async def finish_run(self, live: LiveRun) -> Run:
        await self.save_points([live])
        async with self._kernel.db.sessions() as session:
            points = await self._points(session, live.run_id)
        track = analysis.replay(points)
        summary = analysis.summarise_track(track) if points else {"distance_m": 0.0, "moving_s": 0.0, "elapsed_s": 0.0}
        now = utc_now()
        async with self._kernel.unit_of_work() as uow:
            run = await uow.session.get(Run, live.run_id)
            if run is None:
                raise NotFound("run vanished")
            if run.status == "finished":
                return run
            run.status, run.finished_at, run.summary, run.updated_at = "finished", now, summary, now
            run.track = analysis.filtered_positions(track)
            run.distance_m, run.moving_s = float(summary["distance_m"]), float(summary["moving_s"])
            run.elapsed_s = float(summary["elapsed_s"])
            uow.emit(
                RunFinished(
                    run_id=run.run_id,
                    user_id=run.user_id,
                    started_at=run.started_at,
                    finished_at=now,
                    distance_m=run.distance_m,
                    moving_s=run.moving_s,
                    race_id=run.race_id,
                )
            )
        return run

    async def _points(self, session: AsyncSession, run_id: uuid.UUID) -> list[GpsPoint]:
        chunks = await session.scalars(select(RunChunk).where(RunChunk.run_id == run_id).order_by(RunChunk.id))
        return sorted((_point_of(row) for chunk in chunks for row in chunk.points), key=lambda point: point.t)

    async def run_points(self, run_id: uuid.UUID) -> list[GpsPoint]:
        async with self._kernel.db.sessions() as session:
            return await self._points(session, run_id)

    async def forget_old_points(self) -> int:
        """Retention: raw points go after the configured days; summaries stay."""
        cutoff = utc_now() - timedelta(days=self._settings.running_point_retention_days)
        async with self._kernel.db.sessions() as session, session.begin():
            result = await session.execute(delete(RunChunk).where(RunChunk.created_at < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)

    # -- who may see a run ----------------------------------------------------------------

    async def watchable_run(self, viewer: uuid.UUID, run_id: uuid.UUID) -> Run:
        async with self._kernel.db.sessions() as session:
            run = await session.get(Run, run_id)
            if run is None:
                raise NotFound("no such run")
            if run.user_id != viewer:
                friendship = await session.get(Friendship, (run.user_id, viewer))
                if friendship is None or friendship.status != "accepted":
                    raise Forbidden("only the runner's friends may watch this run")
        return run

    async def share(self, user: uuid.UUID, run_id: uuid.UUID, hours: float) -> tuple[str, datetime]:
        if not 0 < hours <= self._settings.running_share_max_hours:
            raise Conflict(f"a link lasts between a minute and {self._settings.running_share_max_hours} hours")
        token = secrets.token_urlsafe(24)
        expires_at = utc_now() + timedelta(hours=hours)
        async with self._kernel.db.sessions() as session, session.begin():
            run = await session.get(Run, run_id)
            if run is None or run.user_id != user:
                raise NotFound("no such run of yours")
            session.add(
                ShareLink(token_hash=secret_digest(token), run_id=run_id, created_by=user, expires_at=expires_at)
            )
        return token, expires_at

    async def shared_run(self, token: str) -> Run:
        async with self._kernel.db.sessions() as session:
            link = await session.get(ShareLink, secret_digest(token))
            if link is None:
                raise NotFound("unknown link")
            if link.expires_at <= utc_now():
                raise Forbidden("this link has expired")
            run = await session.get(Run, link.run_id)
        if run is None:
            raise NotFound("the run is gone")
        return run

    # -- history --------------------------------------------------------------------------

    async def runs_of(self, user: uuid.UUID, *, limit: int, before: datetime | None) -> Sequence[Run]:
        query = select(Run).where(Run.user_id == user)
        if before is not None:
            query = query.where(Run.started_at < before)
        async with self._kernel.db.sessions() as session:
            return (await session.scalars(query.order_by(Run.started_at.desc()).limit(limit))).all()

    async def records(self, user: uuid.UUID) -> dict[str, Any]:
        async with self._kernel.db.sessions() as session:
            runs = (await session.scalars(select(Run).where(Run.user_id == user, Run.status == "finished"))).all()
        best: dict[str, dict[str, Any]] = {}
        for run in runs:
            for distance, seconds in (run.summary.get("best_efforts_s") or {}).items():
                if distance not in best or seconds < best[distance]["moving_s"]:
                    best[distance] = {"moving_s": seconds, "run_id": str(run.run_id)}
        longest = max(runs, key=lambda run: run.distance_m, default=None)
        return {
            "best_efforts": best,
            "longest": {"distance_m": longest.distance_m, "run_id": str(longest.run_id)} if longest else None,
            "runs": len(runs),
            "total_distance_m": round(sum(run.distance_m for run in runs), 1),
        }

    async def import_run(self, user: uuid.UUID, title: str, points: Sequence[GpsPoint]) -> Run:
        track = analysis.replay(points)
        summary = analysis.summarise_track(track)
        now = utc_now()
        started = datetime.fromtimestamp(points[0].t, UTC)
        finished = datetime.fromtimestamp(points[-1].t, UTC)
        run_id = uuid.uuid4()
        async with self._kernel.unit_of_work() as uow:
            run = Run(
                run_id=run_id,
                user_id=user,
                status="finished",
                source="gpx",
                title=title,
                started_at=started,
                finished_at=finished,
                distance_m=float(summary["distance_m"]),
                moving_s=float(summary["moving_s"]),
                elapsed_s=float(summary["elapsed_s"]),
                summary=summary,
                track=analysis.filtered_positions(track),
                updated_at=now,
            )
            uow.session.add(run)
            for start in range(0, len(points), 600):
                chunk = points[start : start + 600]
                uow.session.add(
                    RunChunk(run_id=run_id, first_t=chunk[0].t, points=[_point_row(p) for p in chunk], created_at=now)
                )
            uow.emit(
                RunFinished(
                    run_id=run_id,
                    user_id=user,
                    started_at=started,
                    finished_at=finished,
                    distance_m=run.distance_m,
                    moving_s=run.moving_s,
                    source="gpx",
                )
            )
        return run

    # -- races ----------------------------------------------------------------------------

    async def create_race(
        self,
        host: uuid.UUID,
        *,
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
            friends = set(await self.friends_of(session, host))
            strangers = [user for user in invite if user not in friends]
            if strangers:
                raise Forbidden("you can only invite friends")
            session.add(race)
            session.add(RaceEntry(race_id=race.race_id, user_id=host, status="joined"))
            for user in dict.fromkeys(invite):
                session.add(RaceEntry(race_id=race.race_id, user_id=user, status="invited"))
        return race

    async def join_race(self, user: uuid.UUID, race_id: uuid.UUID) -> None:
        async with self._kernel.db.sessions() as session, session.begin():
            entry = await session.get(RaceEntry, (race_id, user))
            race = await session.get(Race, race_id)
            if entry is None or race is None:
                raise NotFound("you are not invited to this race")
            if race.status == "finished":
                raise Conflict("the race is over")
            if entry.status == "invited":
                entry.status = "joined"

    async def start_race(self, user: uuid.UUID, race_id: uuid.UUID) -> Race:
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

    async def _enter_race(
        self, session: AsyncSession, race_id: uuid.UUID, user: uuid.UUID, run_id: uuid.UUID, now: datetime
    ) -> RaceInfo:
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
        return _race_info(race)

    async def race(self, viewer: uuid.UUID, race_id: uuid.UUID) -> tuple[Race, Sequence[RaceEntry]]:
        async with self._kernel.db.sessions() as session:
            race = await session.get(Race, race_id)
            entries = (await session.scalars(select(RaceEntry).where(RaceEntry.race_id == race_id))).all()
        if race is None or viewer not in {entry.user_id for entry in entries}:
            raise NotFound("no such race of yours")
        return race, entries

    async def record_race_finish(self, live: LiveRun, finish_s: float | None) -> tuple[RacePlacing, ...] | None:
        """The runner crossed the line (or the clock ran out): store it; when it was the last
        one, close the race and return its placings (exactly one replica does)."""
        assert live.race is not None
        async with self._kernel.db.sessions() as session, session.begin():
            await session.execute(
                update(RaceEntry)
                .where(RaceEntry.race_id == live.race.race_id, RaceEntry.user_id == live.user_id)
                .values(status="finished", finish_s=finish_s, distance_m=live.track.distance_m)
            )
            waiting = await session.scalar(
                select(func.count())
                .select_from(RaceEntry)
                .where(RaceEntry.race_id == live.race.race_id, RaceEntry.status == "joined")
            )
        if waiting:
            return None
        return await self.close_race(live.race.race_id)

    async def close_race(self, race_id: uuid.UUID) -> tuple[RacePlacing, ...] | None:
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
                ranked = sorted(finishers, key=lambda entry: entry.finish_s or 0.0)
            else:  # fixed time: the furthest wins
                ranked = sorted(finishers, key=lambda entry: -entry.distance_m)
            others = sorted((entry for entry in entries if entry not in ranked), key=lambda entry: -entry.distance_m)
            placings = []
            for rank, entry in enumerate(ranked, start=1):
                entry.rank = rank
                placings.append(
                    RacePlacing(user_id=entry.user_id, rank=rank, distance_m=entry.distance_m, finish_s=entry.finish_s)
                )
            placings += [RacePlacing(user_id=entry.user_id, rank=None, distance_m=entry.distance_m) for entry in others]
            uow.emit(
                RaceFinished(
                    race_id=race_id,
                    mode=_mode(race),
                    target=race.target,
                    finished_at=now,
                    placings=tuple(placings),
                )
            )
        return tuple(placings)

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

    # -- outings (walk or run together) ---------------------------------------------------

    async def create_outing(
        self, owner: uuid.UUID, *, title: str, members: Sequence[uuid.UUID], minutes: int
    ) -> Outing:
        now = utc_now()
        async with self._kernel.db.sessions() as session, session.begin():
            friends = set(await self.friends_of(session, owner))
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

    async def outing_for(self, user: uuid.UUID, outing_id: uuid.UUID) -> Outing:
        async with self._kernel.db.sessions() as session:
            outing = await session.get(Outing, outing_id)
        if outing is None or str(user) not in outing.members:
            raise NotFound("no such outing of yours")
        if outing.status != "open" or outing.ends_at <= utc_now():
            raise Conflict("the outing has ended")
        return outing

    async def close_outing(self, user: uuid.UUID | None, outing_id: uuid.UUID) -> bool:
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

    # -- steps ----------------------------------------------------------------------------

    async def upload_steps(self, user: uuid.UUID, day: date, device_id: str, steps: int) -> dict[str, Any]:
        """Idempotent per day and device (a re-upload replaces the count; a day's total is
        the largest device count, since a phone and a watch count the same steps)."""
        async with self._kernel.unit_of_work() as uow:
            session = uow.session
            friends = await self.friends_of(session, user)
            before = await self._day_totals(session, [user, *friends], day)
            row = await session.get(StepCount, (user, day, device_id))
            if row is None:
                session.add(StepCount(user_id=user, day=day, device_id=device_id, steps=steps, updated_at=utc_now()))
            else:
                row.steps, row.updated_at = steps, utc_now()
            await session.flush()
            after = await self._day_totals(session, [user, *friends], day)
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

    async def _day_totals(self, session: AsyncSession, users: list[uuid.UUID], day: date) -> dict[uuid.UUID, int]:
        rows = await session.execute(
            select(StepCount.user_id, func.max(StepCount.steps))
            .where(StepCount.user_id.in_(users), StepCount.day == day)
            .group_by(StepCount.user_id)
        )
        return {user: int(steps) for user, steps in rows}

    async def step_ranking(self, user: uuid.UUID, *, period: Literal["day", "week"], day: date) -> list[dict[str, Any]]:
        async with self._kernel.db.sessions() as session:
            friends = await self.friends_of(session, user)
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


def _ranks(totals: dict[uuid.UUID, int]) -> dict[uuid.UUID, int]:
    """Competition ranking (1, 2, 2, 4): ties share a rank."""
    ordered = sorted(totals.values(), reverse=True)
    return {user: ordered.index(steps) + 1 for user, steps in totals.items()}
