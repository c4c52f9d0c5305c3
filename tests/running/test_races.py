"""Races between three runners over real WebSockets: the live leaderboard, finishes, the
results and RaceFinished; and an outing that closes when it ends."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime

import pytest
from websockets.exceptions import ConnectionClosed

from contracts import RaceFinished
from tests.running.conftest import member, receive, track_points
from tests.support.waiting import eventually


async def test_three_runners_race_five_hundred_metres(open_running):
    # Points may run ahead of the clock here, so the race needs no real-time wait.
    async with open_running(running_max_future_s=600, running_race_countdown_s=0) as running:
        await _race(running)


async def _race(running):
    host, second, third = member(), member(), member()
    for friend in (second, third):
        await running.befriend(host, friend)
    created = await running.client.post(
        "/v1/races",
        json={
            "title": "Friday 500",
            "mode": "distance",
            "target": 500,
            "invite": [str(second.user_id), str(third.user_id)],
        },
        headers=host.headers,
    )
    assert created.status_code == 201, created.text
    race_id = created.json()["race_id"]
    for racer in (second, third):
        assert (await running.client.post(f"/v1/races/{race_id}/join", headers=racer.headers)).status_code == 204
    assert (await running.client.post(f"/v1/races/{race_id}/start", headers=second.headers)).status_code == 403
    started = await running.client.post(f"/v1/races/{race_id}/start", headers=host.headers)
    assert started.json()["status"] == "running"

    named = await running.client.put("/v1/profile", json={"display_name": "Hare"}, headers=host.headers)
    assert named.status_code == 200
    # The same course at three paces: the host fastest, the third runner slowest.
    course = track_points(seed=5, seconds=280, start_time=time.time() + 0.5)
    paces = {host: 1.0, second: 0.9, third: 0.8}
    sockets = {}
    for racer in paces:
        socket = await running.socket(f"/ws/runs?race_id={race_id}", racer).__aenter__()
        assert (await receive(socket, "started"))["race"]["mode"] == "distance"
        sockets[racer] = socket
    try:
        for racer, pace in paces.items():
            await sockets[racer].send(json.dumps({"type": "points", "points": _slowed(course, pace)}))
        board = await receive(sockets[third], "leaderboard", timeout=5)
        while len(board["board"]) < 3:  # boards are pushed as progress arrives
            board = await receive(sockets[third], "leaderboard", timeout=5)
        assert [entry["user_id"] for entry in board["board"]] == [str(r.user_id) for r in (host, second, third)]
        assert all(entry["lat"] is not None for entry in board["board"])  # where the competitors are
        leader, *others = board["board"]
        assert leader["name"] == "Hare"  # the name the runner chose; others get a neutral one
        assert all(entry["name"].startswith("Runner ") for entry in others)
        assert (leader["gap_m"], leader["gap_s"]) == (0.0, 0.0)
        assert all(entry["gap_m"] >= 0 for entry in others)
        assert others[-1]["gap_m"] >= others[0]["gap_m"]
        assert all(entry["pace_s_per_km"] is None or 120 < entry["pace_s_per_km"] < 900 for entry in board["board"])
        results = await receive(sockets[host], "results", timeout=10)
    finally:
        for socket in sockets.values():
            await socket.close()
    placings = results["placings"]
    assert [placing["user_id"] for placing in placings] == [str(host.user_id), str(second.user_id), str(third.user_id)]
    assert [placing["rank"] for placing in placings] == [1, 2, 3]
    assert placings[0]["finish_s"] < placings[1]["finish_s"] < placings[2]["finish_s"]
    await eventually(lambda: len(running.of(RaceFinished)) == 1, timeout=5)
    stored = (await running.client.get(f"/v1/races/{race_id}", headers=third.headers)).json()
    assert stored["status"] == "finished"
    assert [entry["rank"] for entry in stored["entries"]] == [1, 2, 3]


def _slowed(points: list[dict], scale: float) -> list[dict]:
    """The same course at a slower pace: positions interpolated along the track."""
    out = []
    last = len(points) - 1
    for index, point in enumerate(points):
        position = index * scale
        low = min(int(position), last)
        high = min(low + 1, last)
        share = position - low
        a, b = points[low], points[high]
        out.append(
            {**point, "lat": a["lat"] + (b["lat"] - a["lat"]) * share, "lon": a["lon"] + (b["lon"] - a["lon"]) * share}
        )
    return out


async def test_racers_must_be_invited_friends_and_joined(running):
    host, stranger = member(), member()
    refused = await running.client.post(
        "/v1/races",
        json={"title": "x", "mode": "time", "target": 600, "invite": [str(stranger.user_id)]},
        headers=host.headers,
    )
    assert refused.status_code == 403
    silly = await running.client.post(
        "/v1/races", json={"title": "x", "mode": "distance", "target": 5}, headers=host.headers
    )
    assert silly.status_code == 422
    race = (
        await running.client.post("/v1/races", json={"title": "x", "mode": "time", "target": 600}, headers=host.headers)
    ).json()
    async with running.socket(f"/ws/runs?race_id={race['race_id']}", stranger) as socket:
        with pytest.raises(ConnectionClosed) as closed:
            await socket.recv()
        assert closed.value.rcvd.reason == "join the race first"


async def test_an_outing_shares_positions_and_closes_when_ended(running):
    owner, friend = member(), member()
    await running.befriend(owner, friend)
    outing = await running.client.post(
        "/v1/outings",
        json={"title": "Han river walk", "members": [str(friend.user_id)], "minutes": 30},
        headers=owner.headers,
    )
    assert outing.status_code == 201
    path = outing.json()["path"]
    accepted = await running.client.post(f"/v1/outings/{outing.json()['outing_id']}/accept", headers=friend.headers)
    assert accepted.status_code == 204
    point = track_points(seconds=5)[0]
    async with running.socket(path, owner) as mine, running.socket(path, friend) as theirs:
        await receive(mine, "joined")
        await receive(theirs, "joined")
        await mine.send(json.dumps(point))
        seen = await receive(theirs, "group")  # the group's positions, every few seconds
        assert [entry["user_id"] for entry in seen["members"]] == [str(owner.user_id)]
        await mine.send(json.dumps({**point, "lat": 200}))
        assert "lat" in (await receive(mine, "error"))["reason"]
        ended = await running.client.delete(f"/v1/outings/{outing.json()['outing_id']}", headers=owner.headers)
        assert ended.status_code == 204
        await receive(theirs, "closed")
        await asyncio.sleep(0.2)
        assert theirs.close_code == 1000
    async with running.socket(path, friend) as late:
        with pytest.raises(ConnectionClosed) as closed:
            await late.recv()
        assert closed.value.rcvd.reason == "the outing has ended"


async def test_a_time_race_ranks_by_distance_when_the_clock_runs_out(open_running):
    async with open_running(running_max_future_s=600, running_race_countdown_s=0) as running:
        host, rival = member(), member()
        await running.befriend(host, rival)
        race = (
            await running.client.post(
                "/v1/races",
                json={"title": "2 minutes", "mode": "time", "target": 120, "invite": [str(rival.user_id)]},
                headers=host.headers,
            )
        ).json()
        await running.client.post(f"/v1/races/{race['race_id']}/join", headers=rival.headers)
        await running.client.post(f"/v1/races/{race['race_id']}/start", headers=host.headers)
        course = track_points(seed=9, seconds=180, start_time=time.time() + 0.5)
        async with (
            running.socket(f"/ws/runs?race_id={race['race_id']}", host) as fast,
            running.socket(f"/ws/runs?race_id={race['race_id']}", rival) as slow,
        ):
            for socket in (fast, slow):
                await receive(socket, "started")
            await slow.send(json.dumps({"type": "points", "points": _slowed(course, 0.7)}))
            await fast.send(json.dumps({"type": "points", "points": course}))
            results = await receive(fast, "results", timeout=10)
        placings = results["placings"]
        assert [placing["user_id"] for placing in placings] == [str(host.user_id), str(rival.user_id)]
        assert placings[0]["distance_m"] > placings[1]["distance_m"]
        assert {placing["finish_s"] for placing in placings} == {120.0}


async def test_a_distance_race_ranks_by_gun_time_and_reports_chip_times(open_running):
    """One racer stops for a minute, the other starts half a minute late and runs a little
    slower: by moving time the stopper would win; from the gun the late starter is ahead."""
    async with open_running(running_max_future_s=600, running_race_countdown_s=0) as running:
        stopper, late = member(), member()
        await running.befriend(stopper, late)
        created = await running.client.post(
            "/v1/races",
            json={"title": "400", "mode": "distance", "target": 400, "invite": [str(late.user_id)]},
            headers=stopper.headers,
        )
        race_id = created.json()["race_id"]
        assert (await running.client.post(f"/v1/races/{race_id}/join", headers=late.headers)).status_code == 204
        started = (await running.client.post(f"/v1/races/{race_id}/start", headers=stopper.headers)).json()
        gun = datetime.fromisoformat(started["start_at"]).timestamp()

        course = track_points(seed=5, seconds=280, start_time=gun + 1.0)
        # The stopper halts after 60 s for 60 s (standing on the spot), then goes on.
        halted = [{**course[59], "t": course[59]["t"] + second} for second in range(1, 61)]
        stopping = course[:60] + halted + [{**point, "t": point["t"] + 60} for point in course[60:]]
        late_start = [{**point, "t": point["t"] + 29.0} for point in _slowed(course, 0.9)]
        sockets = {}
        for racer in (stopper, late):
            socket = await running.socket(f"/ws/runs?race_id={race_id}", racer).__aenter__()
            await receive(socket, "started")
            sockets[racer] = socket
        try:
            for racer, sent in ((stopper, stopping), (late, late_start)):
                # Within what the server takes from the future (600 s here).
                ahead = [point for point in sent if point["t"] < gun + 280]
                await sockets[racer].send(json.dumps({"type": "points", "points": ahead}))
            results = await receive(sockets[stopper], "results", timeout=10)
        finally:
            for socket in sockets.values():
                await socket.close()
        await eventually(lambda: len(running.of(RaceFinished)) == 1, timeout=5)
    placings = {placing["user_id"]: placing for placing in results["placings"]}
    first, second = placings[str(late.user_id)], placings[str(stopper.user_id)]
    assert (first["rank"], second["rank"]) == (1, 2)
    assert first["finish_s"] < second["finish_s"]
    # Chip time starts at the racer's own first step: 30 s less than gun time for the late
    # starter; about the same for the one who left with the gun (the stop is in both).
    assert first["finish_s"] - first["chip_s"] == pytest.approx(30.0, abs=1.5)
    assert second["finish_s"] - second["chip_s"] == pytest.approx(1.0, abs=1.5)
    assert second["chip_s"] > first["chip_s"] + 30  # the minute's stop costs the stopper
    # The published result carries both times too (chip time is an optional v1 field).
    [published] = running.of(RaceFinished)
    chips = {placing.user_id: placing.chip_s for placing in published.placings}
    assert chips == {late.user_id: first["chip_s"], stopper.user_id: second["chip_s"]}


async def test_a_finisher_running_on_stays_finished_on_the_board():
    import uuid as _uuid

    from running.live_groups import RaceBoard, dumps

    board = RaceBoard(_uuid.uuid4(), "distance", 100.0)
    fast, slow = str(_uuid.uuid4()), str(_uuid.uuid4())
    board.deliver("race", dumps({"type": "progress", "user_id": slow, "name": "slow", "distance_m": 60.0}))
    board.deliver("race", dumps({"type": "finish", "user_id": fast, "name": "fast", "distance_m": 101.0,
                                 "finish_s": 11.0, "chip_s": 10.5}))  # fmt: skip
    # The winner's cool-down: progress without a finish time must not erase it.
    board.deliver("race", dumps({"type": "progress", "user_id": fast, "name": "fast", "distance_m": 130.0}))
    leader, second = board.leaderboard()
    assert (leader["user_id"], leader["finish_s"], leader["chip_s"]) == (fast, 11.0, 10.5)
    assert second["user_id"] == slow
    assert second["finish_s"] is None
