"""GPX round trips, refusals of bad files, personal records, steps and their ranking."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from contracts import StepRankChanged
from running import gpx
from running.track import GpsPoint
from tests.running.conftest import member, receive, track_points
from tests.support.waiting import eventually


async def test_gpx_export_then_import_preserves_the_track(running):
    runner = member()
    points = track_points(seconds=240)
    async with running.socket("/ws/runs", runner) as socket:
        run_id = (await receive(socket, "started"))["run_id"]
        await socket.send(json.dumps({"type": "points", "points": points}))
        await socket.send(json.dumps({"type": "finish"}))
        finished = await receive(socket, "finished")
    exported = await running.client.get(f"/v1/runs/{run_id}/gpx", headers=runner.headers)
    assert exported.headers["content-type"] == "application/gpx+xml"
    name, parsed = gpx.parse(exported.content)
    assert name.startswith("Run on ")
    stored = sorted((GpsPoint.model_validate(point) for point in points), key=lambda point: point.t)
    # Every point the run stored is exported (the spikes it refused never were stored).
    assert len(parsed) == finished["summary"]["points"] > 200
    kept = [point for point in stored if any(abs(point.t - other.t) < 0.001 for other in parsed)]
    assert len(kept) == len(parsed)
    for original, back in zip(kept, parsed, strict=True):
        assert abs(original.t - back.t) < 0.001
        assert abs(original.lat - back.lat) < 1e-6
        assert abs(original.lon - back.lon) < 1e-6
        assert back.hr == original.hr

    imported = await running.client.post(
        "/v1/runs/gpx", content=exported.content, headers={**runner.headers, "content-type": "application/gpx+xml"}
    )
    assert imported.status_code == 201, imported.text
    again = imported.json()
    assert again["source"] == "gpx"
    # GPX carries no accuracy, so the filter weighs the points a little differently.
    assert abs(again["distance_m"] - finished["summary"]["distance_m"]) < 0.02 * again["distance_m"]
    records = (await running.client.get("/v1/records", headers=runner.headers)).json()
    assert records["runs"] == 2
    longest = max(again["distance_m"], finished["summary"]["distance_m"])
    assert longest < 1000  # four minutes at ~3 m/s: no kilometre to have a best effort over
    assert records["best_efforts"] == {}
    assert abs(records["longest"]["distance_m"] - longest) < 0.1


BAD_FILES = {
    b"not xml at all": "not well-formed XML",
    b'<kml xmlns="http://www.opengis.net/kml/2.2"></kml>': "not a GPX, TCX or FIT document",
    b'<gpx xmlns="http://www.topografix.com/GPX/1/0" version="1.0"></gpx>': "at least two",
    b"0123456789": "not well-formed XML",
    b"\x0e\x20\x54\x08\x10\x00\x00\x00.FIT\x00\x00garbage": "invalid FIT",
    b'<TrainingCenterDatabase xmlns="http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2"/>': "two Trackpoints",
    b'<gpx xmlns="http://www.topografix.com/GPX/1/1" version="1.1"><trk><trkseg>'
    b'<trkpt lat="37.5" lon="127.0"><time>2026-11-01T06:00:00Z</time></trkpt></trkseg></trk></gpx>': "at least two",
    b'<gpx xmlns="http://www.topografix.com/GPX/1/1" version="1.1"><trk><trkseg>'
    b'<trkpt lat="97.5" lon="127.0"><time>2026-11-01T06:00:00Z</time></trkpt>'
    b'<trkpt lat="37.5" lon="127.0"><time>2026-11-01T06:00:01Z</time></trkpt></trkseg></trk></gpx>': "trkpt 1: lat",
    b'<gpx xmlns="http://www.topografix.com/GPX/1/1" version="1.1"><trk><trkseg>'
    b'<trkpt lat="37.5" lon="127.0"></trkpt><trkpt lat="37.5" lon="127.0"></trkpt></trkseg></trk></gpx>': "no time",
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
    b'<gpx xmlns="http://www.topografix.com/GPX/1/1" version="1.1"><name>&lol2;</name></gpx>': "refused XML construct",
}


async def test_malformed_or_hostile_gpx_gets_a_clear_refusal(running):
    runner = member()
    for document, reason in BAD_FILES.items():
        response = await running.client.post(
            "/v1/runs/gpx", content=document, headers={**runner.headers, "content-type": "application/gpx+xml"}
        )
        assert response.status_code == 422, document
        assert reason in response.json()["detail"], response.json()
    assert (await running.client.get("/v1/runs", headers=runner.headers)).json() == []


async def test_steps_are_idempotent_per_device_and_rank_friends(running):
    me, ahead, behind = member(), member(), member()
    await running.befriend(me, ahead)
    await running.befriend(me, behind)
    today = datetime.now(UTC).date()
    for who, steps in ((ahead, 9000), (behind, 4000)):
        response = await running.client.put(
            f"/v1/steps/{today}", json={"device_id": "phone", "steps": steps}, headers=who.headers
        )
        assert response.status_code == 200
    first = await running.client.put(
        f"/v1/steps/{today}", json={"device_id": "watch", "steps": 8000}, headers=me.headers
    )
    assert first.json()["rank"] == 2
    again = await running.client.put(
        f"/v1/steps/{today}", json={"device_id": "watch", "steps": 8000}, headers=me.headers
    )
    assert again.json() == first.json() | {"was": 2}  # the same upload changes nothing
    passed = await running.client.put(
        f"/v1/steps/{today}", json={"device_id": "phone", "steps": 9500}, headers=me.headers
    )
    assert passed.json()["rank"] == 1  # the day counts the larger device, not the sum
    await eventually(lambda: any(event.user_id == ahead.user_id for event in running.of(StepRankChanged)), timeout=5)
    overtaken = [event for event in running.of(StepRankChanged) if event.user_id == ahead.user_id]
    assert len(overtaken) == 1
    assert (overtaken[0].overtaken_by, overtaken[0].new_rank, overtaken[0].steps) == (me.user_id, 2, 9500)
    ranking = (await running.client.get("/v1/steps/ranking?period=week", headers=me.headers)).json()
    assert [(row["steps"], row["rank"], row["me"]) for row in ranking] == [
        (9500, 1, True),
        (9000, 2, False),
        (4000, 3, False),
    ]
    assert all(row["name"] for row in ranking)  # a name to show, chosen or neutral, never an e-mail
    too_old = await running.client.put(
        f"/v1/steps/{today - timedelta(days=60)}", json={"device_id": "phone", "steps": 1}, headers=me.headers
    )
    assert too_old.status_code == 422
    negative = await running.client.put(
        f"/v1/steps/{today}", json={"device_id": "phone", "steps": -5}, headers=me.headers
    )
    assert negative.status_code == 422
