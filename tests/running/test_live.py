"""Live runs over real WebSockets: a runner streams a recorded track, a friend watches,
strangers and bad input are refused with reasons."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from contracts import RunFinished, RunStarted
from running.analysis import replay, summarise
from running.track import GpsPoint
from tests.running.conftest import member, receive, track_points
from tests.support.waiting import eventually


async def test_a_runner_streams_a_track_and_gets_live_stats_and_a_summary(running):
    runner, friend = member(), member()
    await running.befriend(runner, friend)
    points = track_points(seconds=300)
    async with running.socket("/ws/runs", runner) as socket:
        started = await receive(socket, "started")
        run_id = started["run_id"]
        for start in range(0, 250, 50):  # a phone that batches a little
            await socket.send(json.dumps({"type": "points", "points": points[start : start + 50]}))
            stats = await receive(socket, "stats")
        assert stats["points"] + sum(stats["refused"].values()) == 250  # multipath spikes are refused
        assert set(stats["refused"]) <= {"impossible_jump"}
        for point in points[250:260]:  # then a point a second, as a phone does (faster here)
            await socket.send(json.dumps({"type": "point", **point}))
            await asyncio.sleep(0.05)
        await socket.send(json.dumps({"type": "points", "points": points[260:]}))
        await socket.send(json.dumps({"type": "finish"}))
        finished = await receive(socket, "finished")
    reference = summarise([GpsPoint.model_validate(point) for point in points])
    summary = finished["summary"]
    assert summary["distance_m"] == reference["distance_m"]
    assert summary["splits_s"] == reference["splits_s"]
    assert summary["heart_rate"]["zones_s"] == reference["heart_rate"]["zones_s"]
    await eventually(lambda: len(running.of(RunFinished)) == 1, timeout=5)
    [started_event] = running.of(RunStarted)
    assert started_event.friends == (friend.user_id,)  # for "your friend started a run"
    [finished_event] = running.of(RunFinished)
    assert str(finished_event.run_id) == run_id

    detail = (await running.client.get(f"/v1/runs/{run_id}", headers=friend.headers)).json()
    assert detail["status"] == "finished"
    assert len(detail["track"]) > 250
    assert (await running.client.get(f"/v1/runs/{run_id}", headers=member().headers)).status_code == 403
    listing = (await running.client.get("/v1/runs", headers=runner.headers)).json()
    assert [item["run_id"] for item in listing] == [run_id]


async def test_a_friend_watches_live_in_order_and_a_stranger_may_not(running):
    runner, friend, stranger = member(), member(), member()
    await running.befriend(runner, friend)
    points = track_points(seconds=60)
    async with running.socket("/ws/runs", runner) as socket:
        run_id = (await receive(socket, "started"))["run_id"]
        async with running.socket(f"/ws/runs/{run_id}/watch", friend) as watcher:
            await receive(watcher, "watching")
            for start in range(0, 60, 5):  # within the rate limit: a frame per batch of five
                await socket.send(json.dumps({"type": "points", "points": points[start : start + 5]}))
            seen = [await receive(watcher, "position") for _ in range(12)]
            times = [message["t"] for message in seen]
            assert times == sorted(times)
            assert seen[-1]["distance_m"] >= seen[0]["distance_m"]
        async with running.socket(f"/ws/runs/{run_id}/watch", stranger) as intruder:
            with pytest.raises(ConnectionClosed) as closed:
                await intruder.recv()
            assert closed.value.rcvd.code == 1008
            assert "friends" in closed.value.rcvd.reason


async def test_a_shared_link_lets_anyone_watch_until_it_expires(running):
    runner = member()
    async with running.socket("/ws/runs", runner) as socket:
        run_id = (await receive(socket, "started"))["run_id"]
        shared = await running.client.post(f"/v1/runs/{run_id}/share", json={"hours": 1}, headers=runner.headers)
        assert shared.status_code == 201
        async with running.socket(shared.json()["path"]) as anonymous:
            await receive(anonymous, "watching")
            await socket.send(json.dumps({"type": "point", **track_points(seconds=5)[0]}))
            assert (await receive(anonymous, "position"))["run_id"] == run_id
        async with running.socket("/ws/share/not-a-real-token") as nobody:
            with pytest.raises(ConnectionClosed) as closed:
                await nobody.recv()
            assert closed.value.rcvd.reason == "unknown link"
    too_long = await running.client.post(f"/v1/runs/{run_id}/share", json={"hours": 100}, headers=runner.headers)
    assert too_long.status_code == 409


async def test_bad_frames_get_reasons_and_a_flood_closes_the_socket(running):
    runner = member()
    point = track_points(seconds=5)[0]
    async with running.socket("/ws/runs", runner) as socket:
        await receive(socket, "started")
        await socket.send("{not json")
        assert (await receive(socket, "error"))["reason"].startswith("not JSON")
        await socket.send(json.dumps({"type": "teleport"}))
        assert "expected type" in (await receive(socket, "error"))["reason"]
        await socket.send(json.dumps({"type": "point", **point, "lat": 123.0}))
        refused = await receive(socket, "refused")
        assert refused["invalid"][0].startswith("lat")
        await socket.send(json.dumps({"type": "point", **point, "t": point["t"] + 86400}))
        assert (await receive(socket, "refused"))["reasons"] == {"timestamp_in_future": 1}
        for _ in range(200):
            await socket.send(json.dumps({"type": "point", **point}))
        with pytest.raises(ConnectionClosed) as closed:
            await drain(socket)
        assert closed.value.rcvd.code == 1008
        assert closed.value.rcvd.reason == "rate limit exceeded"


async def drain(socket) -> None:
    async with asyncio.timeout(5):
        while True:
            await socket.recv()


async def test_the_handshake_needs_a_valid_token(running):
    with pytest.raises(InvalidStatus) as refused:
        async with running.socket("/ws/runs"):
            pass
    assert refused.value.response.status_code == 401
    from tests.support import tokens

    forged = tokens.signed(tokens.claims(sub="00000000-0000-0000-0000-000000000001"), key=tokens.other_key())
    import websockets

    with pytest.raises(InvalidStatus) as forged_refused:
        async with websockets.connect(
            running.live_url + "/ws/runs", additional_headers={"authorization": f"Bearer {forged}"}
        ):
            pass
    assert forged_refused.value.response.status_code == 401


async def test_a_reconnect_resumes_the_same_run(running):
    runner = member()
    points = track_points(seconds=120)
    async with running.socket("/ws/runs", runner) as socket:
        run_id = (await receive(socket, "started"))["run_id"]
        await socket.send(json.dumps({"type": "points", "points": points[:60]}))
        first = await receive(socket, "stats")

    async def stored() -> bool:  # the server saves a run's points when its socket closes
        detail = await running.client.get(f"/v1/runs/{run_id}", headers=runner.headers)
        return abs(detail.json()["distance_m"] - first["distance_m"]) < 0.1

    await eventually(stored, timeout=5)
    async with running.socket(f"/ws/runs?run_id={run_id}", runner) as socket:
        resumed = await receive(socket, "started")
        assert resumed["run_id"] == run_id
        assert resumed["stats"]["distance_m"] == first["distance_m"]
        await socket.send(json.dumps({"type": "points", "points": points[50:]}))  # overlap: duplicates
        stats = await receive(socket, "stats")
        reference = replay([GpsPoint.model_validate(point) for point in points])
        assert stats["points"] == len(reference.points)  # nothing lost, nothing twice
        assert stats["distance_m"] == round(reference.distance_m, 1)
