"""Training analytics over imported history: weekly volume, acute:chronic load, Riegel
predictions, and shoes with their mileage."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from running import gpx
from running.analytics import riegel
from running.synthetic import generate
from running.track import GpsPoint
from tests.running.conftest import member


def _file(seed: int, seconds: int, days_ago: float) -> bytes:
    track = generate(seed, seconds=seconds, start_time=time.time() - days_ago * 86400)
    points = [
        GpsPoint(t=s.t, lat=s.lat, lon=s.lon, acc=s.accuracy, alt=s.altitude, hr=s.heart_rate) for s in track.samples
    ]
    return gpx.export(points, name=f"{days_ago} days ago")


async def test_volume_load_predictions_and_shoes(running):
    runner = member()
    runs = {}
    for seed, seconds, days_ago in ((1, 1900, 2), (2, 420, 9), (3, 420, 20)):
        response = await running.client.post(
            "/v1/runs/import", content=_file(seed, seconds, days_ago), headers=runner.headers
        )
        assert response.status_code == 201, response.text
        runs[days_ago] = response.json()
    report = (await running.client.get("/v1/analytics?weeks=5", headers=runner.headers)).json()
    weeks = report["weekly_volume"]
    assert len(weeks) == 5
    assert sum(week["runs"] for week in weeks) == 3
    assert sum(week["distance_m"] for week in weeks) == pytest.approx(sum(r["distance_m"] for r in runs.values()), 0.01)
    today = datetime.now(UTC).date()
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).date()
    this_week = today - timedelta(days=today.weekday())
    assert weeks[-1]["week"] == this_week.isoformat()
    assert weeks[-1]["runs"] == (1 if two_days_ago >= this_week else 0)

    load = report["load"]
    assert load["acute_7d"] > 0
    assert load["ratio"] == pytest.approx(load["acute_7d"] / load["chronic_28d_weekly"], abs=0.01)
    assert load["ratio"] > 1.5  # one long run this week against a quiet month
    assert load["zone"].startswith("injury risk")

    basis = report["prediction_basis"]
    assert basis["distance_m"] == 5000.0  # the longest best effort, from the long run
    assert basis["run_id"] == runs[2]["run_id"]
    predictions = report["predictions_s"]
    assert predictions["10k"] == round(riegel(basis["moving_s"], 5000.0, 10000.0))
    assert predictions["5k"] == round(basis["moving_s"])
    assert predictions["5k"] < predictions["10k"] < predictions["half"] < predictions["marathon"]

    shoe = (
        await running.client.post("/v1/shoes", json={"name": "Pegasus", "retire_at_km": 50}, headers=runner.headers)
    ).json()
    for days_ago in (2, 9):
        worn = await running.client.put(
            f"/v1/runs/{runs[days_ago]['run_id']}/shoe", json={"shoe_id": shoe["shoe_id"]}, headers=runner.headers
        )
        assert worn.status_code == 204
    someone = member()
    theirs = await running.client.put(
        f"/v1/runs/{runs[20]['run_id']}/shoe", json={"shoe_id": shoe["shoe_id"]}, headers=someone.headers
    )
    assert theirs.status_code == 404
    [listed] = (await running.client.get("/v1/shoes", headers=runner.headers)).json()
    assert listed["runs"] == 2
    assert listed["km"] == pytest.approx((runs[2]["distance_m"] + runs[9]["distance_m"]) / 1000, abs=0.01)
    assert listed["worn_out"] is False
