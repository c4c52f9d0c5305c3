"""Privacy zones hide where a shared track starts and ends, on every path a track leaves
its runner by: a friend's live view, a share link (live and REST), a friend's view of the
finished run and its GPX export, and an outing's group positions. The runner sees their
own track whole."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET

from running.nearby import metres
from tests.running.conftest import member, receive, track_points

RADIUS_M = 150.0


def _inside(zones: list[dict], lat: float, lon: float) -> bool:
    return any(metres(zone["lat"], zone["lon"], lat, lon) <= zone["radius_m"] for zone in zones)


async def test_a_shared_track_shows_neither_its_start_nor_its_end(running):
    runner, friend = member(), member()
    await running.befriend(runner, friend)
    course = track_points(seed=3, seconds=200)
    home, away = course[0], course[-1]
    zones = [
        {"lat": home["lat"], "lon": home["lon"], "radius_m": RADIUS_M},
        {"lat": away["lat"], "lon": away["lon"], "radius_m": RADIUS_M},
    ]
    assert metres(home["lat"], home["lon"], away["lat"], away["lon"]) > 2 * RADIUS_M
    saved = await running.client.put("/v1/profile", json={"privacy_zones": zones}, headers=runner.headers)
    assert saved.status_code == 200, saved.text

    async with running.socket("/ws/runs", runner) as socket:
        run_id = (await receive(socket, "started"))["run_id"]
        link = await running.client.post(f"/v1/runs/{run_id}/share", json={"hours": 1}, headers=runner.headers)
        token = link.json()["token"]
        async with (
            running.socket(f"/ws/runs/{run_id}/watch", friend) as watcher,
            running.socket(f"/ws/share/{token}") as stranger,
        ):
            await receive(watcher, "watching")
            await receive(stranger, "watching")
            await asyncio.sleep(0.1)
            for start in range(0, len(course), 20):
                await socket.send(json.dumps({"type": "points", "points": course[start : start + 20]}))
                await asyncio.sleep(0.02)
            await socket.send(json.dumps({"type": "finish"}))
            await receive(socket, "finished", timeout=10)
            for viewer in (watcher, stranger):
                seen = []
                while (message := json.loads(await asyncio.wait_for(viewer.recv(), 5)))["type"] != "finished":
                    seen.append(message)
                hidden = [message for message in seen if message["hidden"]]
                shown = [message for message in seen if not message["hidden"]]
                assert hidden
                assert shown
                assert all(message["lat"] is None and message["lon"] is None for message in hidden)
                assert not any(_inside(zones, message["lat"], message["lon"]) for message in shown)

    own = (await running.client.get(f"/v1/runs/{run_id}", headers=runner.headers)).json()["track"]
    assert _inside(zones, own[0][1], own[0][2])
    assert _inside(zones, own[-1][1], own[-1][2])
    for view in (
        await running.client.get(f"/v1/runs/{run_id}", headers=friend.headers),
        await running.client.get(f"/v1/shared/{token}"),  # no account: the link is the credential
    ):
        assert view.status_code == 200, view.text
        track = view.json()["track"]
        assert len(track) > len(own) // 3
        assert not any(_inside(zones, lat, lon) for _, lat, lon in track)
        assert view.json()["distance_m"] > 400  # the summary is the run's own

    exported = await running.client.get(f"/v1/runs/{run_id}/gpx", headers=friend.headers)
    points = [
        (float(element.get("lat", 0)), float(element.get("lon", 0)))
        for element in ET.fromstring(exported.content).iter()
        if element.tag.endswith("trkpt")
    ]
    assert points
    assert not any(_inside(zones, lat, lon) for lat, lon in points)
    mine = await running.client.get(f"/v1/runs/{run_id}/gpx", headers=runner.headers)
    assert mine.content.count(b"<trkpt") > len(points)
    assert (await running.client.get("/v1/shared/" + "x" * 32)).status_code == 404


async def test_an_outing_does_not_show_a_member_inside_their_privacy_zone(running):
    host, walker = member(), member()
    await running.befriend(host, walker)
    course = track_points(seed=4, seconds=120)
    home = course[0]
    zone = {"lat": home["lat"], "lon": home["lon"], "radius_m": RADIUS_M}
    assert (await running.client.put("/v1/profile", json={"privacy_zones": [zone]}, headers=host.headers)).is_success
    created = await running.client.post(
        "/v1/outings",
        json={"title": "Walk", "members": [str(walker.user_id)], "minutes": 30},
        headers=host.headers,
    )
    outing_id, path = created.json()["outing_id"], created.json()["path"]
    assert (await running.client.post(f"/v1/outings/{outing_id}/accept", headers=walker.headers)).is_success
    async with running.socket(path, host) as mine, running.socket(path, walker) as theirs:
        await receive(mine, "joined")
        await receive(theirs, "joined")
        await asyncio.sleep(0.1)
        for point in course[:3]:  # at home: inside the zone
            await mine.send(json.dumps(point))
        await asyncio.sleep(0.1)
        await theirs.send(json.dumps({**course[0], "lat": course[0]["lat"] + 0.01}))
        group = await receive(theirs, "group")
        assert str(host.user_id) not in {entry["user_id"] for entry in group["members"]}
        outside = next(point for point in course if not _inside([zone], point["lat"], point["lon"]))
        await mine.send(json.dumps(outside))
        while str(host.user_id) not in {entry["user_id"] for entry in group["members"]}:
            group = await receive(theirs, "group")
