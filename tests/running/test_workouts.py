"""A structured workout followed live: 6 x 400 m with recoveries on a generated track. The
server tracks the current step, sends cues over the live socket, and the run's history
shows each step's target beside what was done."""

from __future__ import annotations

import json
import time

import pytest
from websockets.exceptions import ConnectionClosed

from tests.running.conftest import member, track_points

WORKOUT = {
    "title": "6 x 400",
    "steps": [
        {"kind": "warmup", "distance_m": 200},
        {
            "repeat": 6,
            "steps": [
                # A target the generated runner (~3 m/s) cannot hold: it is told to go faster.
                {"kind": "run", "distance_m": 400, "pace_min_s_per_km": 170, "pace_max_s_per_km": 200},
                {"kind": "recover", "duration_s": 30},
            ],
        },
        {"kind": "cooldown", "distance_m": 200},
    ],
}


async def test_six_by_four_hundred_metres_with_cues_and_history(open_running):
    async with open_running(running_max_future_s=1000, running_max_batch=600) as running:
        runner = member()
        bad = await running.client.post(
            "/v1/workouts",
            json={"title": "x", "steps": [{"kind": "run", "distance_m": 400, "duration_s": 60}]},
            headers=runner.headers,
        )
        assert bad.status_code == 422
        created = await running.client.post("/v1/workouts", json=WORKOUT, headers=runner.headers)
        assert created.status_code == 201, created.text
        workout_id = created.json()["workout_id"]
        assert len(created.json()["steps"]) == 14
        stranger = member()
        async with running.socket(f"/ws/runs?workout_id={workout_id}", stranger) as refused:
            with pytest.raises(ConnectionClosed) as closed:
                await refused.recv()
            assert closed.value.rcvd.reason == "no such workout of yours"

        points = track_points(seed=3, seconds=1150, start_time=time.time() - 280)
        cues = []
        async with running.socket(f"/ws/runs?workout_id={workout_id}", runner) as socket:
            started = json.loads(await socket.recv())
            run_id = started["run_id"]
            for start in range(0, len(points), 500):
                await socket.send(json.dumps({"type": "points", "points": points[start : start + 500]}))
            await socket.send(json.dumps({"type": "finish"}))
            while True:
                message = json.loads(await socket.recv())
                if message["type"] == "cue":
                    cues.append(message)
                if message["type"] == "finished":
                    summary = message["summary"]
                    break
        detail = (await running.client.get(f"/v1/runs/{run_id}", headers=runner.headers)).json()
    steps = [cue for cue in cues if cue["kind"] == "step"]
    assert [cue["step"] for cue in steps] == list(range(1, 15))
    assert steps[1]["say"] == "step 2 of 14: run 400 m at 2:50-3:20/km"
    assert any(cue["kind"] == "pace" and cue["advice"] == "faster" for cue in cues)
    assert cues[-1]["kind"] == "done"
    report = summary["workout"]
    assert report["completed_steps"] == 14
    intervals = [step for step in report["steps"] if step["kind"] == "run"]
    assert len(intervals) == 6
    for step in intervals:
        assert 400 <= step["actual"]["distance_m"] < 420  # a point a second: a few metres past the mark
        assert step["actual"]["pace_s_per_km"] > step["pace_max_s_per_km"]  # slower than asked, and shown so
    for step in (step for step in report["steps"] if step["kind"] == "recover"):
        assert 30 <= step["actual"]["elapsed_s"] < 32
    assert detail["summary"]["workout"]["completed_steps"] == 14
