"""Live runs: start, resume after a reconnect, batched persistence of points, the finish;
and who may watch a run (friends, or anyone holding an unexpired share link)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, any_, bindparam, delete, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from common.db import BinaryArray, UtcDateTime
from common.events.envelope import utc_now
from common.kernel import ServiceKernel
from common.security import secret_digest
from contracts import RunFinished, RunStarted
from running import analysis
from running.errors import Conflict, Forbidden, NotFound
from running.friends import friends_of, is_friend
from running.live_run import LiveRun
from running.models import RaceEntry, Run, RunChunk, ShareLink
from running.privacy import Zones, privacy_zones, shown_points, shown_positions
from running.profiles import display_name, heart_rates, nearby_privacy
from running.races import RaceInfo, enter_race, race_of_run
from running.settings import RunningSettings
from running.track import DUPLICATE_S, GpsPoint, LiveTrack
from running.workouts import WorkoutTracker, own_workout

MAX_FRIENDS_TOLD = 1000
TOUCH_EVERY_S = 60.0  # a connected but quiet run (paused, standing) still shows it is alive


_RUNS, _ENTRIES, _CHUNKS = (cast(Table, model.__table__) for model in (Run, RaceEntry, RunChunk))
_INSERT_CHUNKS = insert(_CHUNKS)
# PostgreSQL: every run's chunk in one statement from arrays. The executemany above costs
# ~90 ms of CPU for 2,000 runs, in the event loop every flush (a stall every watcher's
# positions wait behind); this, ~27 ms, most of it encoding the points.
_INSERT_CHUNKS_ARRAYS = text(
    "INSERT INTO run_chunks (run_id, first_t, points, created_at)"
    " SELECT v.run_id, v.first_t, v.points::json, :created_at"
    " FROM unnest(:run_ids, :first_ts, :points) AS v(run_id, first_t, points)"
).bindparams(
    bindparam("run_ids", type_=BinaryArray("uuid")),
    bindparam("first_ts", type_=BinaryArray("float8")),
    bindparam("points", type_=BinaryArray("text")),
    bindparam("created_at", type_=UtcDateTime()),
)
_UPDATE_PROGRESS = update(_RUNS).where(_RUNS.c.run_id == bindparam("b_run_id"))
# PostgreSQL: every run's progress in one statement, the rows as arrays (unnest), instead
# of one protocol exchange a row: a flush of 500 runs took 22 ms of CPU, now 15 (the
# runs' JSON fields are encoded here, as the JSON columns would).
_UPDATE_PROGRESS_ARRAYS = text(
    "UPDATE runs SET distance_m = v.distance_m, moving_s = v.moving_s, elapsed_s = v.elapsed_s,"
    " refused = v.refused::json, laps = v.laps::json, pauses = v.pauses::json, workout = v.workout::json,"
    " updated_at = :updated_at"
    " FROM unnest(:run_ids, :distance_m, :moving_s, :elapsed_s, :refused, :laps, :pauses, :workout)"
    " AS v(run_id, distance_m, moving_s, elapsed_s, refused, laps, pauses, workout)"
    " WHERE runs.run_id = v.run_id"
).bindparams(
    # Binary arrays: psycopg would quote and escape every JSON string of a text array
    # (29 ms of CPU for a flush of 2,000 runs; 3.5 ms in binary).
    bindparam("run_ids", type_=BinaryArray("uuid")),
    *(bindparam(name, type_=BinaryArray("float8")) for name in ("distance_m", "moving_s", "elapsed_s")),
    *(bindparam(name, type_=BinaryArray("text")) for name in ("refused", "laps", "pauses", "workout")),
    bindparam("updated_at", type_=UtcDateTime()),
)
_UPDATE_RACE_DISTANCE = update(_ENTRIES).where(
    _ENTRIES.c.race_id == bindparam("b_race_id"), _ENTRIES.c.user_id == bindparam("b_user_id")
)


def _as_arrays(progress: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """The progress rows as one array per column, JSON fields encoded."""
    arrays: dict[str, Any] = {"run_ids": [row["b_run_id"] for row in progress], "updated_at": now}
    for name in ("distance_m", "moving_s", "elapsed_s"):
        arrays[name] = [float(row[name]) for row in progress]  # a binary array takes one type
    for name in ("refused", "laps", "pauses", "workout"):
        arrays[name] = [json.dumps(row[name]) for row in progress]
    return arrays


def _chunk_arrays(chunks: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """The chunk rows as one array per column, the points as JSON text."""
    return {
        "run_ids": [chunk["run_id"] for chunk in chunks],
        "first_ts": [float(chunk["first_t"]) for chunk in chunks],
        "points": [json.dumps(chunk["points"], separators=(",", ":")) for chunk in chunks],
        "created_at": now,
    }


def point_row(point: GpsPoint) -> list[float | None]:
    row: list[float | None] = [point.t, point.lat, point.lon, point.acc, point.alt, point.hr]
    return row if point.cad is None else [*row, point.cad]  # older rows have six fields


def point_of(row: Sequence[float | None]) -> GpsPoint:
    t, lat, lon, acc, alt, hr = row[:6]
    cad = row[6] if len(row) > 6 else None
    return GpsPoint.model_validate({"t": t, "lat": lat, "lon": lon, "acc": acc, "alt": alt, "hr": hr, "cad": cad})


async def stored_points(session: AsyncSession, *, run_id: uuid.UUID) -> list[GpsPoint]:
    chunks = await session.scalars(select(RunChunk).where(RunChunk.run_id == run_id).order_by(RunChunk.id))
    ordered = sorted((point_of(row) for chunk in chunks for row in chunk.points), key=lambda point: point.t)
    # A point's device time is its identity. Two sockets of one run on two replicas (a
    # reconnect before the old one is noticed dead) can each store a resent point: the
    # track is read with each moment once, as the live track refuses a duplicate.
    unique: list[GpsPoint] = []
    for point in ordered:
        if not unique or point.t - unique[-1].t >= DUPLICATE_S:
            unique.append(point)
    return unique


class RunService:
    def __init__(self, *, kernel: ServiceKernel, settings: RunningSettings) -> None:
        self._kernel = kernel
        self._settings = settings

    async def start_run(
        self,
        *,
        user: uuid.UUID,
        race_id: uuid.UUID | None = None,
        workout_id: uuid.UUID | None = None,
        title: str = "",
    ) -> tuple[LiveRun, list[uuid.UUID]]:
        """A new live run, and the runs it ended: a member has at most one live run, and
        a start without a run id means the phone lost the old one (a reconnect names it),
        so the old run is finished with everything it recorded."""
        now = utc_now()
        run_id = uuid.uuid4()
        race: RaceInfo | None = None
        # One transaction (one pooled connection) per start: a thousand phones may start
        # at once when a race's gun goes.
        async with self._kernel.unit_of_work() as uow:
            session = uow.session
            ended = list(await session.scalars(select(Run.run_id).where(Run.user_id == user, Run.status == "live")))
            if race_id is not None:
                race = await enter_race(session, race_id=race_id, user=user, run_id=run_id, now=now)
            workout = None
            if workout_id is not None:
                planned = await own_workout(session, user=user, workout_id=workout_id)
                workout = WorkoutTracker.begin(workout_id=workout_id, title=planned.title, steps=planned.steps)
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
                    refused={},
                    workout=workout.state if workout is not None else None,
                    updated_at=now,
                )
            )
            friends = await friends_of(session, user=user)
            name = await display_name(session, user=user)
            nearby = await nearby_privacy(session, user=user)
            zones = await privacy_zones(session, user=user)
            uow.emit(
                RunStarted(
                    run_id=run_id,
                    user_id=user,
                    started_at=now,
                    race_id=race_id,
                    friends=tuple(friends[:MAX_FRIENDS_TOLD]),
                )
            )
        for old in ended:  # rare: the phone lost its run; the old one ends with what it stored
            await self.finish_stored(run_id=old)
        live = LiveRun(
            run_id,
            user,
            self._new_track(now.timestamp(), race),
            race,
            name=name,
            workout=workout,
            nearby=nearby,
            zones=zones,
        )
        return live, ended

    async def resume_run(self, *, user: uuid.UUID, run_id: uuid.UUID) -> LiveRun:
        """Pick up a live run after a reconnect, possibly on another replica: the track is
        rebuilt from the stored points."""
        async with self._kernel.db.sessions() as session:
            run = await session.get(Run, run_id)
            if run is None or run.user_id != user:
                raise NotFound("no such run of yours")
            if run.status != "live":
                raise Conflict("this run is finished")
            race = await race_of_run(session, race_id=run.race_id) if run.race_id is not None else None
            points = await stored_points(session, run_id=run_id)
            name = await display_name(session, user=user)
            nearby = await nearby_privacy(session, user=user)
            zones = await privacy_zones(session, user=user)
        track = self._new_track(run.started_at.timestamp(), race, pauses=run.pauses)
        latest = max((point.t for point in points), default=0.0)
        for point in points:
            track.add(point, now=latest)
        # Refused points were never stored: their counts come back from the run's row.
        track.refused = Counter(run.refused or {})
        workout = WorkoutTracker(dict(run.workout)) if run.workout else None
        return LiveRun(
            run_id,
            user,
            track,
            race,
            laps=list(run.laps or []),
            name=name,
            workout=workout,
            nearby=nearby,
            zones=zones,
            heard_t=latest,
            stored_t=latest,
            acked_t=latest,
        )

    def _new_track(
        self, started_at: float, race: RaceInfo | None = None, *, pauses: list[list[float | None]] | None = None
    ) -> LiveTrack:
        return LiveTrack(
            started_at=started_at,
            reorder_window_s=self._settings.running_reorder_window_s,
            max_future_s=self._settings.running_max_future_s,
            not_before=race.start_at if race else None,
            marks=(race.target,) if race is not None and race.mode == "distance" else (),
            pauses=pauses,
        )

    async def save_points(self, *, runs: Sequence[LiveRun]) -> int:
        """One transaction for every run's new points: a chunk row per run, not a row per
        point, plus each run's (and race entry's) progress."""
        clock = time.monotonic()
        batches = [
            (run, run.pending)
            for run in runs
            if run.pending or run.heard_t > run.stored_t or clock - run.touched >= TOUCH_EVERY_S
        ]
        if not batches:
            return 0
        heard = [run.heard_t for run, _ in batches]  # what this write makes durable
        started = [run.write_started() for run, _ in batches]
        for run, _ in batches:
            run.pending, run.touched = [], clock
        try:
            await self._write_points(batches)
        except BaseException:
            # Kept for the next flush, a cancelled one (a replica stopping mid-write) too:
            # the final flush at shutdown stores them. A write cancelled during its commit
            # may have landed as well; a point stored twice is read once (stored_points).
            for run, points in batches:
                run.pending = points + run.pending
                run.write_failed()
            raise
        for (run, _), newest, began in zip(batches, heard, started, strict=True):
            run.write_committed(started=began, heard=newest)
        return sum(len(points) for _, points in batches)

    async def _write_points(self, batches: list[tuple[LiveRun, list[GpsPoint]]]) -> None:
        now = utc_now()
        chunks = [
            {"run_id": run.run_id, "first_t": points[0].t, "points": [point_row(p) for p in points], "created_at": now}
            for run, points in batches
            if points
        ]
        progress = [
            {
                "b_run_id": run.run_id,
                "distance_m": run.track.distance_m,
                "moving_s": run.track.moving_s,
                "elapsed_s": run.track.elapsed_s(),
                "refused": dict(run.track.refused),
                "laps": list(run.laps),
                "pauses": [list(pause) for pause in run.track.pauses],
                "workout": run.workout.state if run.workout is not None else None,
                "updated_at": now,
            }
            for run, _ in batches
        ]
        racing = [
            {"b_race_id": run.race.race_id, "b_user_id": run.user_id, "distance_m": run.track.distance_m}
            for run, _ in batches
            if run.race is not None
        ]
        # Executemany statements: a call of two hundred runs is three round trips. Core
        # statements on the tables, not the ORM's bulk paths: the same SQL, without the
        # ORM's per-row bookkeeping (a flush of every live run every five seconds).
        async with self._kernel.db.sessions() as session, session.begin():
            if session.get_bind().dialect.name == "postgresql":
                if chunks:
                    await session.execute(_INSERT_CHUNKS_ARRAYS, _chunk_arrays(chunks, now))
                await session.execute(_UPDATE_PROGRESS_ARRAYS, _as_arrays(progress, now))
            else:
                if chunks:
                    await session.execute(_INSERT_CHUNKS, chunks)
                await session.execute(_UPDATE_PROGRESS, progress)
            if racing:
                await session.execute(_UPDATE_RACE_DISTANCE, racing)

    async def finish_run(self, *, live: LiveRun) -> Run:
        live.touched = float("-inf")  # written even without new points: the refusals are
        await self.save_points(runs=[live])
        return await self.finish_stored(run_id=live.run_id)

    async def finish_stored(self, *, run_id: uuid.UUID) -> Run:
        """Finish a run from what is stored (its points and refusal counts): the end of a
        live run, or of one abandoned without a finish."""
        async with self._kernel.db.sessions() as session:
            points = await stored_points(session, run_id=run_id)
            stored = await session.get(Run, run_id)
            if stored is None:
                raise NotFound("no such run")
            heart = await heart_rates(session, user=stored.user_id)
            pauses = stored.pauses
        # Replaying a long run is CPU work: off the event loop, so live sockets keep flowing.
        track = await asyncio.to_thread(analysis.replay, points, pauses=pauses)
        summary: dict[str, Any] = (
            await asyncio.to_thread(analysis.summarise_track, track, heart=heart)
            if points
            else {"distance_m": 0.0, "moving_s": 0.0, "elapsed_s": 0.0}
        )
        now = utc_now()
        async with self._kernel.unit_of_work() as uow:
            run = await uow.session.scalar(select(Run).where(Run.run_id == run_id).with_for_update())
            if run is None:
                raise NotFound("run vanished")
            if run.status == "finished":
                return run
            summary["refused"] = dict(run.refused or {})
            summary["laps"] = list(run.laps or [])
            if run.workout:
                summary["workout"] = WorkoutTracker(dict(run.workout)).report()
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

    async def abandoned_runs(self, *, keep: set[uuid.UUID]) -> list[uuid.UUID]:
        """Live runs nobody has streamed to for the abandon timeout (the socket closed
        without a finish and no reconnect came); ``keep`` are runs this replica serves."""
        cutoff = utc_now() - timedelta(seconds=self._settings.running_abandon_after_s)
        async with self._kernel.db.sessions() as session:
            rows = await session.scalars(select(Run.run_id).where(Run.status == "live", Run.updated_at < cutoff))
            return [run_id for run_id in rows if run_id not in keep]

    async def not_live(self, *, run_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these runs were ended elsewhere (a new start on another replica, the
        janitor): their sockets here are closed."""
        if not run_ids:
            return set()
        held: ColumnElement[bool]
        if self._kernel.db.is_sqlite:  # embedded mode: no arrays, and a handful of runs
            held = Run.run_id.in_(list(run_ids))
        else:
            # One array parameter, not one per run: asked every flush for every run held here.
            held = Run.run_id == any_(bindparam("run_ids", list(run_ids), type_=BinaryArray("uuid")))
        async with self._kernel.db.sessions() as session:
            rows = await session.scalars(select(Run.run_id).where(held, Run.status != "live"))
            return set(rows)

    async def run_points(self, *, run_id: uuid.UUID) -> list[GpsPoint]:
        async with self._kernel.db.sessions() as session:
            return await stored_points(session, run_id=run_id)

    async def forget_old_points(self) -> int:
        """Retention: raw points go after the configured days; summaries stay."""
        cutoff = utc_now() - timedelta(days=self._settings.running_point_retention_days)
        async with self._kernel.db.sessions() as session, session.begin():
            result = await session.execute(delete(RunChunk).where(RunChunk.created_at < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)

    # -- who may see a run ----------------------------------------------------------------

    async def watchable_run(self, *, viewer: uuid.UUID, run_id: uuid.UUID) -> Run:
        async with self._kernel.db.sessions() as session:
            run = await session.get(Run, run_id)
            if run is None:
                raise NotFound("no such run")
            if run.user_id != viewer and not await is_friend(session, user=viewer, of=run.user_id):
                raise Forbidden("only the runner's friends may watch this run")
        return run

    async def privacy_zones(self, *, user: uuid.UUID) -> Zones:
        async with self._kernel.db.sessions() as session:
            return await privacy_zones(session, user=user)

    async def shown_track(self, *, run: Run, viewer: uuid.UUID | None) -> list[list[float]]:
        """The filtered track as ``viewer`` may see it (None: a link holder): whole for its
        runner, without anything inside the runner's privacy zones for everyone else."""
        if run.track is not None:
            track = [list(row) for row in run.track]
        else:  # still live: filter what is stored so far
            points = await self.run_points(run_id=run.run_id)
            replayed = await asyncio.to_thread(analysis.replay, points) if points else None
            track = [list(row) for row in replayed.kept_positions()] if replayed is not None else []
        if viewer == run.user_id:
            return track
        return shown_positions(track, await self.privacy_zones(user=run.user_id))

    async def shown_run_points(self, *, run: Run, viewer: uuid.UUID | None) -> list[GpsPoint]:
        """The raw points (an export) as ``viewer`` may see them."""
        points = await self.run_points(run_id=run.run_id)
        if viewer == run.user_id:
            return points
        return shown_points(points, await self.privacy_zones(user=run.user_id))

    async def share(self, *, user: uuid.UUID, run_id: uuid.UUID, hours: float) -> tuple[str, datetime]:
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

    async def shared_run(self, *, token: str) -> Run:
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
