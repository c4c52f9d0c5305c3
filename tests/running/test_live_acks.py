"""A phone keeps every point until the server says it is stored: acknowledgements by
device time, a reconnect that says where to resume, and a track stored without a
duplicate however often a point is resent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from websockets.exceptions import ConnectionClosed

from common.migrations import upgrade
from running.app import create_app
from running.live import FLUSH_SLICE_RUNS
from running.live_run import LiveRun
from running.models import Run, RunChunk
from running.track import GpsPoint, LiveTrack
from tests.running.conftest import Running, member, receive, running_settings, track_points
from tests.support import tokens
from tests.support.apps import asgi_client


async def stored_times(running, run_id: str) -> list[float]:
    points: list[GpsPoint] = await running.app.state.runs.run_points(run_id=__import__("uuid").UUID(run_id))
    return [point.t for point in points]


async def test_points_are_acknowledged_once_stored_and_a_reconnect_says_from_where(running):
    runner = member()
    points = track_points(seconds=90)
    async with running.socket("/ws/runs", runner) as socket:
        started = await receive(socket, "started")
        run_id = started["run_id"]
        assert started["stored_t"] is None
        await socket.send(json.dumps({"type": "points", "points": points[:40]}))
        ack = await receive(socket, "ack")
        assert ack["t"] == points[39]["t"]
        # The acknowledgement comes after the write: every point up to it is in the database
        # (or was refused for good, as a multipath spike is).
        stored = await stored_times(running, run_id)
        assert stored
        assert stored[-1] <= ack["t"]
        assert {p["t"] for p in points[:40]} >= set(stored)
    async with running.socket(f"/ws/runs?run_id={run_id}", runner) as socket:
        resumed = await receive(socket, "started")
        assert resumed["stored_t"] == points[39]["t"]
        # A phone that lost the acknowledgement resends from further back: stored once.
        await socket.send(json.dumps({"type": "points", "points": points[30:]}))
        ack = await receive(socket, "ack")
        assert ack["t"] == points[-1]["t"]
        await socket.send(json.dumps({"type": "finish"}))
        await receive(socket, "finished")
    stored = await stored_times(running, run_id)
    assert len(stored) == len(set(stored))
    detail = (await running.client.get(f"/v1/runs/{run_id}", headers=runner.headers)).json()
    times = [row[0] for row in detail["track"]]
    assert times == sorted(set(times))


@contextlib.asynccontextmanager
async def first_socket_with(running, runner, points: list[dict]) -> AsyncIterator[tuple[Any, str]]:
    """A runner's first socket of a run, the first 30 ``points`` sent on it."""
    async with running.socket("/ws/runs", runner) as first:
        run_id = (await receive(first, "started"))["run_id"]
        await first.send(json.dumps({"type": "points", "points": points[:30]}))
        yield first, run_id


async def test_a_reconnect_before_the_old_socket_closes_keeps_what_it_took_in(open_running):
    # Flushes far apart: what the first socket took in is only in memory when the phone,
    # out of a tunnel, opens a second one without waiting for the first to be noticed dead.
    async with open_running(running_flush_interval_s=60) as running:
        runner = member()
        points = track_points(seconds=60)
        async with first_socket_with(running, runner, points) as (first, run_id):
            await receive(first, "stats")
            async with running.socket(f"/ws/runs?run_id={run_id}", runner) as second:
                resumed = await receive(second, "started")
                assert resumed["stored_t"] == points[29]["t"]
                assert resumed["stats"]["points"] + sum(resumed["stats"]["refused"].values()) == 30
                await second.send(json.dumps({"type": "points", "points": points[20:]}))
                await second.send(json.dumps({"type": "finish"}))
                await receive(second, "finished")
        stored = await stored_times(running, run_id)
        assert len(stored) == len(set(stored))
        expected = {p["t"] for p in points}
        assert set(stored) <= expected
        assert len(stored) >= len(points) - 5


async def test_a_reconnect_beside_a_flush_still_under_way_waits_until_it_has_settled(open_running):
    # The old socket's last flush is still writing (or is about to fail and put its points
    # back) when the phone reconnects, and the reconnect's own save commits newer points.
    # Resumed then, the phone would be told the older points are stored: it is asked to
    # come back, and once they have settled it resumes with everything stored.
    async with open_running(running_flush_interval_s=60) as running:
        runner = member()
        points = track_points(seconds=60)
        async with first_socket_with(running, runner, points) as (first, run_id):
            held = running.app.state.live.active[uuid.UUID(run_id)]
            while held.heard_t < points[29]["t"]:
                await receive(first, "stats")
            held.write_started()  # a flush that took the first ten points and is still writing
            taken, held.pending = held.pending[:10], held.pending[10:]
            async with running.socket(f"/ws/runs?run_id={run_id}", runner) as second:
                with pytest.raises(ConnectionClosed) as closed:
                    await receive(second, "started")
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1013
            assert held.stored_t < points[0]["t"]  # the reconnect's save committed, but nothing is durable
            held.pending = taken + held.pending  # the flush failed: its points are back
            held.write_failed()
            async with running.socket(f"/ws/runs?run_id={run_id}", runner) as second:
                resumed = await receive(second, "started")
                assert resumed["stored_t"] == points[29]["t"]
        stored = await stored_times(running, run_id)
        assert len(stored) == len(set(stored))
        assert set(stored) <= {p["t"] for p in points[:30]}
        # Every point the first socket took in is stored, but for those refused for good.
        assert len(stored) + sum(held.track.refused.values()) == 30


async def test_duplicate_rows_from_two_replicas_read_as_one_track(running):
    # Two replicas that each stored a resent point: the chunks overlap, the track does not.
    import uuid

    from sqlalchemy import insert

    from common.events.envelope import utc_now
    from running.models import RunChunk
    from running.runs import point_row

    runner = member()
    points = [GpsPoint.model_validate(p) for p in track_points(seconds=30)]
    async with running.socket("/ws/runs", runner) as socket:
        run_id = (await receive(socket, "started"))["run_id"]
    kernel = running.app.state.runs._kernel
    async with kernel.db.sessions() as session, session.begin():
        for part in (points[:20], points[10:]):
            await session.execute(
                insert(RunChunk),
                [{"run_id": uuid.UUID(run_id), "first_t": part[0].t, "points": [point_row(p) for p in part],
                  "created_at": utc_now()}],
            )  # fmt: skip
    stored = await stored_times(running, run_id)
    assert stored == [p.t for p in points]


async def test_a_flush_on_postgresql_stores_each_runs_progress(tmp_path, postgres):
    # PostgreSQL writes every run's progress in one statement (arrays); what it stores is
    # what the live track holds, JSON fields included.
    database = postgres.create("running")
    upgrade("running", database)
    app = create_app(running_settings(tmp_path, database_urls={"running": database}), keys=tokens.key_cache())
    runners, points = [member(), member()], track_points(seconds=60)
    async with asgi_client(app) as client:
        running = Running(app, client, app.state.kernel.settings)
        async with running.socket("/ws/runs", runners[0]) as first, running.socket("/ws/runs", runners[1]) as second:
            run_ids = [(await receive(socket, "started"))["run_id"] for socket in (first, second)]
            await first.send(json.dumps({"type": "points", "points": points[:40]}))
            await first.send(json.dumps({"type": "lap"}))
            await receive(first, "lap")
            await first.send(json.dumps({"type": "pause"}))
            await receive(first, "paused")
            await second.send(json.dumps({"type": "points", "points": points[:20] + points[:3]}))  # 3 resent
            for socket, last in ((first, points[39]), (second, points[19])):
                while (await receive(socket, "ack"))["t"] < last["t"]:
                    pass
            await app.state.live.flush()  # the pause, if it came after the last points' flush
            held = [app.state.live.active[uuid.UUID(run_id)] for run_id in run_ids]
            async with app.state.kernel.db.sessions() as session:
                stored = [await session.get(Run, live.run_id) for live in held]
            for row, live in zip(stored, held, strict=True):
                assert row is not None
                assert row.distance_m == live.track.distance_m
                assert row.distance_m > 0
                assert row.moving_s == live.track.moving_s
                assert row.elapsed_s == live.track.elapsed_s()
                assert row.refused == dict(live.track.refused)
                assert row.laps == live.laps
                assert row.pauses == live.track.pauses
                assert row.workout is None
            assert stored[0].laps
            assert stored[0].pauses
            assert stored[0].pauses[0][1] is None
            assert stored[1].refused == {"duplicate": 3}


async def test_a_flush_of_more_runs_than_a_slice_stores_and_acknowledges_every_one(tmp_path, postgres):
    # A flush stores its runs a slice per transaction (the event loop gets a turn between
    # them); a run in the last slice is stored and its phone told so like the first.
    database = postgres.create("running")
    upgrade("running", database)
    settings = running_settings(tmp_path, database_urls={"running": database}, running_flush_interval_s=60)
    app = create_app(settings, keys=tokens.key_cache())
    live_server = app.state.live
    points = [GpsPoint.model_validate(p) for p in track_points(seconds=10)]
    async with asgi_client(app) as client:
        held = []
        for _ in range(2 * FLUSH_SLICE_RUNS):
            live, _ = await app.state.runs.start_run(user=member().user_id)
            live.pending, live.heard_t = list(points), points[-1].t
            live_server.active.add(live)
            held.append(live)
        running = Running(app, client, settings)
        runner = member()
        async with running.socket("/ws/runs", runner) as socket:
            run_id = uuid.UUID((await receive(socket, "started"))["run_id"])
            await socket.send(json.dumps({"type": "point", **track_points(seconds=10)[0]}))

            async def taken_in() -> None:
                while not live_server.active[run_id].pending:
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(taken_in(), 5)
            assert list(live_server.active)[-1] == run_id  # past the first two slices
            await live_server.flush()
            ack = await receive(socket, "ack")
            assert ack["t"] == live_server.active[run_id].stored_t > 0
        for live in (held[0], held[FLUSH_SLICE_RUNS - 1], held[FLUSH_SLICE_RUNS], held[-1]):
            assert live.stored_t == points[-1].t
            assert await stored_times(running, str(live.run_id)) == [point.t for point in points]
        # One write per slice: each stamps its chunk rows with its own moment.
        async with app.state.kernel.db.sessions() as session:
            per_write = await session.execute(
                select(func.count()).where(RunChunk.run_id.in_([live.run_id for live in held] + [run_id]))
                .group_by(RunChunk.created_at)
            )  # fmt: skip
            assert sorted(count for (count,) in per_write) == [1, FLUSH_SLICE_RUNS, FLUSH_SLICE_RUNS]


def held_run(points: list[GpsPoint]) -> LiveRun:
    live = LiveRun(run_id=uuid.uuid4(), user_id=uuid.uuid4(), track=LiveTrack(started_at=points[0].t))
    live.pending, live.heard_t = list(points), points[-1].t
    return live


def test_a_write_beside_an_earlier_one_makes_nothing_durable_until_that_one_has_committed() -> None:
    points = [GpsPoint.model_validate(p) for p in track_points(seconds=10)]
    live = held_run(points)
    first = live.write_started()  # a reconnect's save takes the points
    second = live.write_started()  # a flush with nothing new, the same heard_t
    live.write_committed(started=second, heard=points[-1].t)
    assert live.stored_t == 0.0  # the points are in the first write, not yet stored
    live.write_committed(started=first, heard=points[-1].t)
    assert live.stored_t == points[-1].t


def test_a_failed_write_voids_what_a_write_beside_it_claimed() -> None:
    points = [GpsPoint.model_validate(p) for p in track_points(seconds=10)]
    live = held_run(points)
    live.write_started()
    second = live.write_started()
    live.write_committed(started=second, heard=points[-1].t)
    live.write_failed()  # its points are back in pending
    assert live.stored_t == 0.0
    # The other order: the failure first, the claim of a write under way beside it after.
    third = live.write_started()
    live.write_started()
    live.write_failed()
    live.write_committed(started=third, heard=points[-1].t)
    assert live.stored_t == 0.0
    # A write that begins after a failure takes the returned points: its claim stands.
    live.write_committed(started=live.write_started(), heard=points[-1].t)
    assert live.stored_t == points[-1].t


async def test_a_runner_is_not_told_points_are_stored_while_a_failed_write_held_them(tmp_path, postgres):
    # A reconnect's save holds the points; a flush beside it has nothing new and commits.
    # The first write then fails: its points go back to pending, and nothing may tell the
    # phone they are stored (it would forget them).
    database = postgres.create("running")
    upgrade("running", database)
    settings = running_settings(tmp_path, database_urls={"running": database}, running_flush_interval_s=60)
    app = create_app(settings, keys=tokens.key_cache())
    points = [GpsPoint.model_validate(p) for p in track_points(seconds=10)]
    outside = create_async_engine(database)
    tasks: list[asyncio.Task[int]] = []
    try:
        async with asgi_client(app), outside.connect() as locker, outside.connect() as watcher:
            runs = app.state.runs
            live, _ = await runs.start_run(user=member().user_id)
            live.pending, live.heard_t = list(points), points[-1].t
            await locker.execute(text("SELECT 1 FROM runs WHERE run_id = :id FOR UPDATE"), {"id": live.run_id})

            async def waiting_on_the_lock(count: int) -> list[int]:
                while True:
                    rows = await watcher.execute(
                        text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                             " AND wait_event_type = 'Lock' ORDER BY xact_start")
                    )  # fmt: skip
                    pids = [pid for (pid,) in rows]
                    await watcher.rollback()  # a transaction keeps reading one snapshot of the activity
                    if len(pids) >= count:
                        return pids
                    await asyncio.sleep(0.02)

            holding = asyncio.create_task(runs.save_points(runs=[live]))
            tasks.append(holding)
            await asyncio.wait_for(waiting_on_the_lock(1), 10)
            beside = asyncio.create_task(runs.save_points(runs=[live]))
            tasks.append(beside)
            first_pid = (await asyncio.wait_for(waiting_on_the_lock(2), 10))[0]
            await watcher.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first_pid})
            with pytest.raises(DBAPIError):
                await holding
            await locker.rollback()
            assert await beside == 0
            assert live.stored_t == 0.0
            assert [point.t for point in live.pending] == [point.t for point in points]
            # The next flush stores them, and only then are they acknowledged.
            assert await runs.save_points(runs=[live]) == len(points)
            assert live.stored_t == points[-1].t
            stored = await runs.run_points(run_id=live.run_id)
            assert [point.t for point in stored] == [point.t for point in points]
    finally:
        for task in tasks:  # a wait that timed out leaves them blocked on the lock
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await outside.dispose()
