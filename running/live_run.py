"""One run as a replica holds it while its runner streams: the live track, the points not
yet stored, and what is durable and acknowledged to the phone (docs/adr/0048)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from running.nearby import PrivacyZone
from running.privacy import Zones
from running.races import RaceInfo
from running.track import GpsPoint, LiveTrack
from running.workouts import WorkoutTracker


@dataclass
class LiveRun:
    """A run being streamed to this replica."""

    run_id: uuid.UUID
    user_id: uuid.UUID
    track: LiveTrack
    race: RaceInfo | None = None
    pending: list[GpsPoint] = field(default_factory=list)
    race_finished: bool = False
    touched: float = field(default_factory=time.monotonic)
    laps: list[dict[str, float]] = field(default_factory=list)
    name: str = ""  # shown on race boards
    workout: WorkoutTracker | None = None
    cues: list[dict[str, Any]] = field(default_factory=list)  # for the runner, after this frame
    nearby: tuple[PrivacyZone, ...] | None = None  # privacy zones when opted in to runners nearby
    nearby_sent: float = 0.0
    zones: Zones = ()  # the runner's privacy zones: what others see never comes from inside
    # Acknowledgements (ADR 0048): the phone sends points in device-time order and keeps
    # each until it is acknowledged. ``heard_t`` is the newest device time this socket has
    # processed (accepted or refused for good), ``stored_t`` the newest whose outcome is in
    # the database, ``acked_t`` the newest told to the phone.
    heard_t: float = 0.0
    stored_t: float = 0.0
    acked_t: float = 0.0
    # Writes of this run under way (a flush, a reconnect's or a finish's save), and how many
    # have failed: a write's ``heard_t`` becomes ``stored_t`` only once no write that was
    # under way beside it can still fail (see ``write_committed``).
    _writes_under_way: int = field(default=0, init=False, repr=False)
    _writes_failed: int = field(default=0, init=False, repr=False)
    _stored_once_settled: float = field(default=0.0, init=False, repr=False)
    # The constant head of every position this run sends its watchers (see live_points.position_frame).
    frame_head: str = field(init=False, repr=False, default="")
    topic: str = field(init=False, repr=False, default="")  # its watchers' topic on the hub

    def __post_init__(self) -> None:
        self.topic = f"run.{self.run_id}"
        self.frame_head = f'{{"type":"position","run_id":"{self.run_id}","user_id":"{self.user_id}",'

    @property
    def writes_under_way(self) -> int:
        return self._writes_under_way

    def write_started(self) -> int:
        """A write of this run's points begins; pass what it returns to ``write_committed``."""
        self._writes_under_way += 1
        return self._writes_failed

    def write_failed(self) -> None:
        """A write failed and its points are back in ``pending``. A write beside it claimed a
        ``heard_t`` that counted on those points: no such claim stands."""
        self._writes_under_way -= 1
        self._writes_failed += 1
        self._stored_once_settled = self.stored_t

    def write_committed(self, *, started: int, heard: float) -> None:
        """A write that began when ``started`` writes had failed committed everything this
        socket had heard up to ``heard``, unless an earlier write beside it holds some of
        those points: the first write of a reconnect can still be under way, or fail, when
        a flush with nothing new commits. Only when no write is left under way is the
        claim made durable, and only if none failed since this one began."""
        self._writes_under_way -= 1
        if started == self._writes_failed:
            self._stored_once_settled = max(self._stored_once_settled, heard)
        if self._writes_under_way == 0:
            self.stored_t = max(self.stored_t, self._stored_once_settled)

    def lap(self, at: float) -> dict[str, float]:
        """The runner pressed the lap button: the lap since the previous one (or the start)."""
        previous = self.laps[-1] if self.laps else {"distance_m": 0.0, "moving_s": 0.0}
        distance, moving = round(self.track.distance_m, 1), round(self.track.moving_s, 1)
        lap = {
            "n": len(self.laps) + 1,
            "t": at,
            "distance_m": distance,
            "moving_s": moving,
            "lap_distance_m": round(distance - previous["distance_m"], 1),
            "lap_moving_s": round(moving - previous["moving_s"], 1),
        }
        self.laps.append(lap)
        self.touched = float("-inf")  # stored at the next flush even without new points
        return lap
