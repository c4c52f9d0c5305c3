"""Runners nearby on the live sockets: an opted-in runner's coarsened position goes to
every replica every few seconds (nothing exact ever leaves the runner's session; inside a
privacy zone the runner disappears), and each replica answers queries from its own copy
of the whole index, so a query needs no network."""

from __future__ import annotations

import time
from typing import Any

from running.hub import Hub
from running.live_groups import BadFrame, NearbyFeed, dumps
from running.live_run import LiveRun
from running.nearby import MAX_RADIUS_M, coarsen

NEARBY_TOPIC = "nearby"
NEARBY_EVERY_S = 5.0  # an opted-in runner's coarse position is shared this often


class LiveNearby:
    def __init__(self, *, hub: Hub) -> None:
        self._hub = hub
        self.feed = NearbyFeed()

    async def start(self) -> None:
        # Every replica keeps the whole index: coarsened updates are few (one per opted-in
        # runner every few seconds), and every replica hears every one of them.
        await self._hub.subscribe(NEARBY_TOPIC, self.feed)

    def due(self, live: LiveRun) -> bool:
        return live.nearby is not None and time.monotonic() - live.nearby_sent >= NEARBY_EVERY_S

    async def share(self, live: LiveRun) -> None:
        position = live.track.position
        if position is None or live.nearby is None:
            return
        live.nearby_sent = time.monotonic()
        coarse = coarsen(position.lat, position.lon, live.nearby)
        if coarse is None:
            await self.gone(live)
            return
        update = {"user_id": str(live.user_id), "name": live.name, "lat": coarse[0], "lon": coarse[1]}
        await self._hub.publish(NEARBY_TOPIC, dumps(update))

    async def gone(self, live: LiveRun) -> None:
        await self._hub.publish(NEARBY_TOPIC, dumps({"user_id": str(live.user_id), "gone": True}))

    def answer(self, live: LiveRun, message: dict[str, Any]) -> dict[str, Any]:
        if live.nearby is None:
            raise BadFrame("opt in to runners nearby (your profile) to see them")
        radius = message.get("radius_m", 1000)
        if isinstance(radius, bool) or not isinstance(radius, int | float) or not 100 <= radius <= MAX_RADIUS_M:
            raise BadFrame(f"radius_m is 100 to {MAX_RADIUS_M:.0f}")
        position = live.track.position
        if position is None:
            return {"type": "nearby", "runners": []}
        runners = self.feed.index.query(position.lat, position.lon, float(radius), exclude=str(live.user_id))
        return {"type": "nearby", "radius_m": radius, "runners": runners}
