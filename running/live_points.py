"""A runner's points and buttons on the live socket: each point checked and added to the
track, its position published to the run's watchers (hidden inside the runner's privacy
zones) and passed on to the race and to runners nearby; the pause, resume and lap
buttons marked on the track; and the runs streaming to this replica."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from running.hub import Hub
from running.live_groups import BadFrame, validation_reason
from running.live_nearby import LiveNearby
from running.live_races import LiveRaces
from running.live_run import LiveRun
from running.privacy import hides
from running.track import Accepted, parse_point


class ActiveRuns(Mapping[uuid.UUID, LiveRun]):
    """The runs streaming to this replica, by run id, and which member's each is: a start
    looks up the member's runs without a scan of every run here (thousands stream to one
    replica, and a thousand may start at a race's gun)."""

    def __init__(self) -> None:
        self._runs: dict[uuid.UUID, LiveRun] = {}
        self._by_member: dict[uuid.UUID, dict[uuid.UUID, LiveRun]] = {}

    def __getitem__(self, run_id: uuid.UUID) -> LiveRun:
        return self._runs[run_id]

    def __iter__(self) -> Iterator[uuid.UUID]:
        return iter(self._runs)

    def __len__(self) -> int:
        return len(self._runs)

    def add(self, live: LiveRun) -> None:
        self.pop(live.run_id)
        self._runs[live.run_id] = live
        self._by_member.setdefault(live.user_id, {})[live.run_id] = live

    def pop(self, run_id: uuid.UUID) -> LiveRun | None:
        live = self._runs.pop(run_id, None)
        if live is not None:
            of_member = self._by_member[live.user_id]
            del of_member[run_id]
            if not of_member:
                del self._by_member[live.user_id]
        return live

    def of_member(self, user: uuid.UUID) -> list[LiveRun]:
        return list(self._by_member.get(user, {}).values())


class LivePoints:
    def __init__(self, *, hub: Hub, races: LiveRaces, nearby: LiveNearby) -> None:
        self._hub = hub
        self._races = races
        self._nearby = nearby

    async def ingest(self, live: LiveRun, raw: list[Any]) -> tuple[list[str], dict[str, int]]:
        invalid: list[str] = []
        refused: dict[str, int] = {}
        accepted = False
        now = time.time()
        for item in raw:
            try:
                point = parse_point(item)
            except ValidationError as exc:
                invalid.append(validation_reason(exc))
                continue
            live.heard_t = max(live.heard_t, point.t)
            outcome = live.track.add(point, now=now)
            if isinstance(outcome, Accepted):
                live.pending.append(point)
                accepted = True
                if live.workout is not None:  # followed point by point: a burst may span steps
                    live.cues += live.workout.update(live.track)
            else:
                refused[outcome.reason.value] = refused.get(outcome.reason.value, 0) + 1
        position = live.track.position
        if accepted and position is not None:
            # Watchers (friends, link holders) see nothing of where the runner is inside a
            # privacy zone: the start at home and the way back are hidden.
            shown = not live.zones or not hides(live.zones, position.lat, position.lon)
            await self._hub.publish(live.topic, position_frame(live, shown=shown))
            if live.race is not None:
                await self._races.progress(live)
            if self._nearby.due(live):
                await self._nearby.share(live)
        return invalid, refused


def control(live: LiveRun, kind: str, message: dict[str, Any]) -> dict[str, Any]:
    """The pause, resume and lap buttons. ``t`` (device time) is optional: without it
    the moment is the newest point's (the phone's clock, as the points use)."""
    at = message.get("t")
    if at is not None and (isinstance(at, bool) or not isinstance(at, int | float) or abs(at - time.time()) > 86400):
        raise BadFrame("t is device time in Unix seconds")
    latest = live.track.position.t if live.track.position is not None else time.time()
    # Without t: a pause is at the last point; a resume is now (no point came meanwhile).
    moment = float(at) if at is not None else (latest if kind != "resume" else time.time())
    live.touched = float("-inf")  # stored at the next flush
    if kind == "lap":
        return {"type": "lap", **live.lap(moment)}
    changed = live.track.pause(moment) if kind == "pause" else live.track.resume(moment)
    return {"type": "paused" if kind == "pause" else "resumed", "changed": changed, "stats": live.track.stats()}


def position_frame(live: LiveRun, *, shown: bool) -> str:
    """The ``position`` message of a run, JSON written directly (once per point, for all
    of its watchers): what ``dumps`` of the same dict gives, in a fraction of the time.
    Fixed-point formats give the same numbers as ``round`` (both round the decimal
    correctly; only trailing zeros differ) at half the cost of ``repr(round(…))``."""
    position = live.track.position
    assert position is not None
    if shown:
        return _POSITION % (
            live.frame_head,
            position.t,
            position.lat,
            position.lon,
            live.track.distance_m,
            position.speed,
            time.time(),
        )
    return _HIDDEN % (live.frame_head, position.t, live.track.distance_m, position.speed, time.time())


_POSITION = '%s"t":%r,"lat":%.7f,"lon":%.7f,"hidden":false,"distance_m":%.1f,"speed_mps":%.2f,"at":%r}'
_HIDDEN = '%s"t":%r,"lat":null,"lon":null,"hidden":true,"distance_m":%.1f,"speed_mps":%.2f,"at":%r}'
