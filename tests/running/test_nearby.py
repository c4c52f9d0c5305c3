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


def test_ten_thousand_runners_over_a_city_only_those_within_the_radius_coarsened():
    import random

    rng = random.Random(7)
    index = NearbyIndex(expire_s=60)
    exact = {}
    for number in range(10_000):  # a 20 km x 20 km city around Seoul's centre
        lat, lon = 37.4566 + rng.uniform(0, 0.18), 126.8780 + rng.uniform(0, 0.23)
        coarse = coarsen(lat, lon, ())
        assert coarse is not None
        index.update(f"r{number}", f"R{number}", *coarse, now=0)
        exact[f"r{number}"] = coarse
    for _ in range(20):
        lat, lon = 37.4566 + rng.uniform(0.03, 0.15), 126.8780 + rng.uniform(0.03, 0.2)
        hits = index.query(lat, lon, 500, now=1)
        within = {user for user, (a, b) in exact.items() if metres(lat, lon, a, b) <= 500}
        assert 0 < len(within) < 50  # ~22 runners a km2: under the answer's cap of 50
        assert {hit["user_id"] for hit in hits} == within
        # What is shown is a cell's centre, never a runner's own point.
        for hit in hits:
            centre = cell_centre(hit["lat"], hit["lon"], COARSE_PRECISION)
            assert (hit["lat"], hit["lon"]) == (round(centre[0], 5), round(centre[1], 5))
        crowded = index.query(lat, lon, 2000, now=1)  # more than 50 within: the nearest 50
        assert len(crowded) == 50
        assert [hit["distance_m"] for hit in crowded] == sorted(hit["distance_m"] for hit in crowded)


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
