"""Runners nearby over real sockets: only those who opted in, at a coarsened position,
never inside their privacy zones; and the index's cells and coarsening."""

from __future__ import annotations

import json

from running.nearby import COARSE_PRECISION, NearbyIndex, PrivacyZone, cell_centre, coarsen, geohash, metres
from tests.running.conftest import member, receive, track_points


def test_geohash_cells_coarsening_and_zones():
    assert geohash(57.64911, 10.40744, 11) == "u4pruydqqvj"  # the reference example
    lat, lon = cell_centre(37.5444, 127.0374, COARSE_PRECISION)
    assert geohash(lat, lon, COARSE_PRECISION) == geohash(37.5444, 127.0374, COARSE_PRECISION)
    assert metres(lat, lon, 37.5444, 127.0374) < 110  # within half a ~153 m cell
    home = PrivacyZone(37.5444, 127.0374, 300)
    assert coarsen(37.5445, 127.0375, (home,)) is None
    assert coarsen(37.56, 127.0374, (home,)) is not None
    index = NearbyIndex(expire_s=60)
    index.update("a", "A", 37.5444, 127.0374, now=0)
    index.update("b", "B", 37.5500, 127.0374, now=0)  # ~620 m north
    index.update("c", "C", 37.6000, 127.0374, now=0)  # ~6 km north
    assert [hit["user_id"] for hit in index.query(37.5444, 127.0374, 1000, exclude="a", now=1)] == ["b"]
    assert [hit["user_id"] for hit in index.query(37.5444, 127.0374, 300, now=1)] == ["a"]
    index.update("b", "B", 37.5445, 127.0375, now=50)  # moved into another cell
    assert {hit["user_id"] for hit in index.query(37.5444, 127.0374, 300, now=51)} == {"a", "b"}
    assert [hit["user_id"] for hit in index.query(37.5444, 127.0374, 300, now=100)] == ["b"]  # a expired
    assert len(index) == 2  # c is still there until a query or sweep finds it stale
    assert index.sweep(now=200) == 2


async def test_only_opted_in_runners_appear_coarsened_and_outside_privacy_zones(running):
    me, other, homebody, hidden = member(), member(), member(), member()
    course = track_points(seed=1, seconds=30)
    start = course[0]
    profiles = {
        me: {"display_name": "Me", "nearby_opt_in": True},
        other: {"display_name": "Kim", "nearby_opt_in": True},
        homebody: {
            "display_name": "Lee",
            "nearby_opt_in": True,
            "privacy_zones": [{"lat": start["lat"], "lon": start["lon"], "radius_m": 2000}],
        },
        hidden: {"display_name": "Park"},
    }
    for who, body in profiles.items():
        assert (await running.client.put("/v1/profile", json=body, headers=who.headers)).status_code == 200
    sockets = {}
    try:
        for who in profiles:
            socket = await running.socket("/ws/runs", who).__aenter__()
            await receive(socket, "started")
            shifted = [{**point, "lat": point["lat"] + 0.0003 * len(sockets)} for point in course]
            await socket.send(json.dumps({"type": "points", "points": shifted}))
            await receive(socket, "stats")
            sockets[who] = socket
        await sockets[me].send(json.dumps({"type": "nearby", "radius_m": 2000}))
        seen = (await receive(sockets[me], "nearby"))["runners"]
        assert [runner["name"] for runner in seen] == ["Kim"]
        # A cell's centre, not the runner's point.
        assert (seen[0]["lat"], seen[0]["lon"]) != (round(course[-1]["lat"] + 0.0003, 5), round(course[-1]["lon"], 5))
        await sockets[hidden].send(json.dumps({"type": "nearby"}))
        assert "opt in" in (await receive(sockets[hidden], "error"))["reason"]
        await sockets[me].send(json.dumps({"type": "nearby", "radius_m": 99_999}))
        assert "radius_m" in (await receive(sockets[me], "error"))["reason"]
        await sockets[other].close()
        await sockets[me].send(json.dumps({"type": "nearby", "radius_m": 2000}))
        for _ in range(20):  # the runner who left vanishes
            if not (await receive(sockets[me], "nearby"))["runners"]:
                break
            await sockets[me].send(json.dumps({"type": "nearby", "radius_m": 2000}))
        else:
            raise AssertionError("a runner who left is still shown")
    finally:
        for socket in sockets.values():
            await socket.close()
