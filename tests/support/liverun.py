"""Live runs in the member app, for the browser tests and the live benchmark: fresh
members who are running friends, and a recorded track to walk a browser's geolocation
along (Chromium's override, one ``set_geolocation`` per fix)."""

from __future__ import annotations

import itertools
import math
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from running.synthetic import generate
from smartgym.demo import PASSWORD


@dataclass(frozen=True)
class Runner:
    email: str
    user_id: str
    headers: dict[str, str]


def new_runner(gateway: str, prefix: str = "runner") -> Runner:
    email = f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"
    with httpx.Client(base_url=gateway, timeout=15) as client:
        created = client.post("/api/auth/signup", json={"email": email, "password": PASSWORD})
        assert created.status_code == 201, created.text
        login = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
    return Runner(email, created.json()["id"], {"authorization": f"Bearer {login.json()['access_token']}"})


def befriend(gateway: str, a: Runner, b: Runner) -> None:
    with httpx.Client(base_url=gateway, timeout=15) as client:
        asked = client.post(f"/api/running/v1/friends/{b.user_id}", headers=a.headers)
        assert asked.status_code == 200, asked.text
        accepted = client.post(f"/api/running/v1/friends/{a.user_id}/accept", headers=b.headers)
        assert accepted.status_code == 204, accepted.text


def recorded_course(seed: int = 3, seconds: int = 900) -> list[tuple[float, float]]:
    """The true path of a recorded run (straights and curves, metre by metre), as
    (lat, lon): a browser walked along it sees a believable course, without the recorded
    noise and multipath spikes (the server's filter has its own tests)."""
    track = generate(seed, seconds=seconds, start_time=1_700_000_000)
    path = [track.plane.to_latlon(point.x, point.y) for point in track.truth]
    course: list[tuple[float, float]] = [path[0]]
    for (lat1, lon1), (lat2, lon2) in itertools.pairwise(path):
        dy = (lat2 - lat1) * 111_320.0
        dx = (lon2 - lon1) * 111_320.0 * math.cos(math.radians(lat1))
        steps = max(1, round(math.hypot(dx, dy)))
        course += [(lat1 + (lat2 - lat1) * i / steps, lon1 + (lon2 - lon1) * i / steps) for i in range(1, steps + 1)]
    return course


class Walker:
    """One browser context moving along the course ``metres_per_fix`` at a time."""

    def __init__(self, context: Any, course: list[tuple[float, float]], metres_per_fix: float) -> None:
        self.context = context
        self.course = course
        self.step = metres_per_fix
        self.at = 0.0

    def fix(self) -> tuple[float, float]:
        self.at += self.step
        lat, lon = self.course[int(self.at) % len(self.course)]
        self.context.set_geolocation({"latitude": lat, "longitude": lon, "accuracy": 5})
        return lat, lon


def geo_options(course: list[tuple[float, float]], **options: Any) -> dict[str, Any]:
    """new_context options for a phone that shares its location, standing at the start."""
    lat, lon = course[0]
    return {
        "permissions": ["geolocation"],
        "geolocation": {"latitude": lat, "longitude": lon, "accuracy": 5},
        **options,
    }
