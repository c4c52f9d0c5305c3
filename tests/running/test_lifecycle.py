"""A run's life beyond the happy path: refusals kept through a resume and the finish,
abandoned runs, one live run per member, watchers let go, imports that are idempotent and
big enough for a marathon, heart-rate zones from the runner's own heart."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.exceptions import ConnectionClosed

from contracts import RunFinished
from running import gpx
from running.synthetic import generate
from running.track import GpsPoint
from tests.running.conftest import member, receive, track_points
from tests.support.waiting import eventually


async def _drain(socket) -> None:
    while True:
        await asyncio.wait_for(socket.recv(), 5)


def _future(point: dict) -> dict:
    return {**point, "t": time.time() + 3600}


async def test_refusal_counts_survive_a_resume_and_the_finish(running):
    runner = member()
    points = track_points(seconds=120)
    async with running.socket("/ws/runs", runner) as socket:
        run_id = (await receive(socket, "started"))["run_id"]
        await socket.send(json.dumps({"type": "points", "points": [*points[:60], _future(points[0])]}))
        assert (await receive(socket, "refused"))["reasons"]["timestamp_in_future"] == 1
        before = (await receive(socket, "stats"))["refused"]
    await asyncio.sleep(0.8)  # a flush
    async with running.socket(f"/ws/runs?run_id={run_id}", runner) as socket:
        resumed = await receive(socket, "started")
        assert resumed["stats"]["refused"] == before
        await socket.send(json.dumps({"type": "points", "points": [*points[60:], _future(points[1])]}))
        await receive(socket, "refused")
        await socket.send(json.dumps({"type": "finish"}))
        finished = await receive(socket, "finished")
    assert finished["summary"]["refused"].get("timestamp_in_future") == 2
    detail = (await running.client.get(f"/v1/runs/{run_id}", headers=runner.headers)).json()
    assert detail["summary"]["refused"].get("timestamp_in_future") == 2


async def test_an_abandoned_run_ends_on_a_timeout_with_its_data(open_running):
    async with open_running(running_abandon_after_s=1) as running:
        runner, friend = member(), member()
        await running.befriend(runner, friend)
        points = track_points(seconds=120)
        async with running.socket("/ws/runs", runner) as socket:
            run_id = (await receive(socket, "started"))["run_id"]
            await socket.send(json.dumps({"type": "points", "points": points}))
            await receive(socket, "stats")
        # The socket is gone without a finish; a friend is still watching.
        async with running.socket(f"/ws/runs/{run_id}/watch", friend) as watcher:
            await receive(watcher, "watching")
            await asyncio.sleep(1.5)
            await running.app.state.live.end_abandoned_runs()  # the janitor's round, now
            ended = await receive(watcher, "finished")
            assert ended["reason"] == "run abandoned"
            with pytest.raises(ConnectionClosed):  # and the watcher is let go
                await asyncio.wait_for(watcher.recv(), 5)
        detail = (await running.client.get(f"/v1/runs/{run_id}", headers=runner.headers)).json()
        assert detail["status"] == "finished"
        assert detail["distance_m"] > 250  # the points it streamed are the run
        await eventually(lambda: len(running.of(RunFinished)) == 1, timeout=5)


async def test_a_new_start_ends_the_old_live_run(running):
    runner = member()
    points = track_points(seconds=120)
    async with running.socket("/ws/runs", runner) as first:
        old = (await receive(first, "started"))["run_id"]
        await first.send(json.dumps({"type": "points", "points": points[:90]}))
        await receive(first, "stats")
        async with running.socket("/ws/runs", runner) as second:
            new = (await receive(second, "started"))["run_id"]
            with pytest.raises(ConnectionClosed) as closed:
                await _drain(first)
            assert closed.value.rcvd.reason == "a new run was started"
    listing = {run["run_id"]: run for run in (await running.client.get("/v1/runs", headers=runner.headers)).json()}
    assert listing[old]["status"] == "finished"
    assert listing[old]["distance_m"] > 150  # kept, not lost
    assert listing[new]["status"] == "live"


async def test_watchers_are_let_go_after_the_finish(running):
    runner, friend = member(), member()
    await running.befriend(runner, friend)
    async with running.socket("/ws/runs", runner) as socket:
        run_id = (await receive(socket, "started"))["run_id"]
        async with running.socket(f"/ws/runs/{run_id}/watch", friend) as watcher:
            await receive(watcher, "watching")
            await socket.send(json.dumps({"type": "points", "points": track_points(seconds=30)}))
            await socket.send(json.dumps({"type": "finish"}))
            await receive(watcher, "finished")
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(watcher.recv(), 5)
            assert closed.value.rcvd.code == 1000


def _marathon_gpx(start: float) -> tuple[bytes, float]:
    track = generate(11, seconds=4 * 3600 + 10 * 60, start_time=start)
    points = [
        GpsPoint(t=s.t, lat=s.lat, lon=s.lon, acc=s.accuracy, alt=s.altitude, hr=s.heart_rate) for s in track.samples
    ]
    return gpx.export(points, name="Marathon"), track.true_distance_m


async def test_the_same_file_twice_is_one_run_and_a_marathon_fits(running):
    runner = member()
    document, truth = _marathon_gpx(time.time() - 30 * 86400)
    assert len(document) > 3 * 1024 * 1024  # far past the default body limit
    headers = {**runner.headers, "content-type": "application/gpx+xml"}
    first = await running.client.post("/v1/runs/import", content=document, headers=headers)
    assert first.status_code == 201, first.text
    assert abs(first.json()["distance_m"] - truth) / truth < 0.02
    again = await running.client.post("/v1/runs/import", content=document, headers=headers)
    assert again.status_code == 200
    assert again.json()["run_id"] == first.json()["run_id"]
    records = (await running.client.get("/v1/records", headers=runner.headers)).json()
    assert records["runs"] == 1
    assert records["total_distance_m"] == pytest.approx(first.json()["distance_m"], abs=0.1)
    await eventually(lambda: len(running.of(RunFinished)) == 1, timeout=5)
    await asyncio.sleep(0.2)
    assert len(running.of(RunFinished)) == 1


async def test_heart_rate_zones_come_from_the_runners_own_heart(running):
    runner = member()
    bad = await running.client.put("/v1/profile", json={"max_hr": 120, "resting_hr": 105}, headers=runner.headers)
    assert bad.status_code == 409
    assert (await running.client.put("/v1/profile", json={"max_hr": 300}, headers=runner.headers)).status_code == 422
    saved = await running.client.put(
        "/v1/profile", json={"display_name": "Mina", "max_hr": 201, "resting_hr": 48}, headers=runner.headers
    )
    assert saved.json()["zones"] == {"max_hr": 201, "resting_hr": 48, "from": "profile"}
    async with running.socket("/ws/runs", runner) as socket:
        await receive(socket, "started")
        await socket.send(json.dumps({"type": "points", "points": track_points(seconds=120)}))
        await socket.send(json.dumps({"type": "finish"}))
        heart = (await receive(socket, "finished"))["summary"]["heart_rate"]
    assert (heart["max_hr_used"], heart["resting_hr_used"], heart["zones_from"]) == (201, 48, "profile")


async def test_without_a_profile_the_maximum_is_estimated_from_history(running):
    runner = member()
    headers = {**runner.headers, "content-type": "application/gpx+xml"}
    peaks = []
    for day in range(3):
        track = generate(20 + day, seconds=600, start_time=time.time() - (day + 2) * 86400)
        points = [
            GpsPoint(t=s.t, lat=s.lat, lon=s.lon, acc=s.accuracy, alt=s.altitude, hr=s.heart_rate)
            for s in track.samples
        ]
        peaks.append(max(point.hr or 0 for point in points))
        response = await running.client.post("/v1/runs/import", content=gpx.export(points, name="x"), headers=headers)
        assert response.status_code == 201
    zones = (await running.client.get("/v1/profile", headers=runner.headers)).json()["zones"]
    assert zones["from"] == "history"
    assert zones["max_hr"] == max(peaks)


def test_the_gateway_lets_a_marathon_file_through():
    from gateway.settings import GatewaySettings

    routes = {route.prefix: route for route in GatewaySettings(environment="test").gateway_routes}
    assert routes["/api/running"].max_body_bytes >= 32 * 1024 * 1024


async def test_pause_resume_and_laps_are_kept_with_the_run(running):
    runner = member()
    points = track_points(seconds=200)
    async with running.socket("/ws/runs", runner) as socket:
        run_id = (await receive(socket, "started"))["run_id"]
        await socket.send(json.dumps({"type": "points", "points": points[:60]}))
        await socket.send(json.dumps({"type": "lap"}))
        first_lap = await receive(socket, "lap")
        await socket.send(json.dumps({"type": "pause", "t": points[59]["t"] + 0.5}))
        assert (await receive(socket, "paused"))["stats"]["paused"] is True
        # The runner walks on while paused: those points are not part of the run.
        await socket.send(json.dumps({"type": "points", "points": points[60:120]}))
        assert (await receive(socket, "refused"))["reasons"]["paused"] == 60
        await socket.send(json.dumps({"type": "resume", "t": points[120]["t"] - 0.5}))
        await receive(socket, "resumed")
        await socket.send(json.dumps({"type": "points", "points": points[120:]}))
        await socket.send(json.dumps({"type": "lap"}))
        second_lap = await receive(socket, "lap")
        await socket.send(json.dumps({"type": "pause", "t": "soon"}))
        assert "device time" in (await receive(socket, "error"))["reason"]
        await socket.send(json.dumps({"type": "finish"}))
        summary = (await receive(socket, "finished"))["summary"]
    assert first_lap["n"] == 1
    assert 150 < first_lap["lap_distance_m"] < 210
    assert second_lap["n"] == 2
    assert 200 < second_lap["lap_distance_m"] < 270  # 80 s after the pause, not the 60 s walked
    assert [lap["n"] for lap in summary["laps"]] == [1, 2]
    assert summary["paused_s"] == pytest.approx(60.0, abs=1.0)
    assert summary["distance_m"] == pytest.approx(second_lap["distance_m"], rel=0.03)
    detail = (await running.client.get(f"/v1/runs/{run_id}", headers=runner.headers)).json()
    assert len(detail["summary"]["laps"]) == 2


async def test_only_the_file_routes_take_big_bodies(running):
    runner = member()
    big = b"{" + b" " * (2 * 1024 * 1024) + b"}"
    refused = await running.client.put(
        "/v1/profile", content=big, headers={**runner.headers, "content-type": "application/json"}
    )
    assert refused.status_code == 413
