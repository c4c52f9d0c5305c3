"""One run's track as points arrive: validation, ordering, de-duplication, filtering and
live statistics (pure; no I/O).

Phones send a point a second, but not tidily: after a tunnel a minute of points comes in
one burst, retries duplicate points, and points overtake each other. The track keeps its
points sorted by *device* time. A point later than the newest is filtered incrementally;
an earlier one (within the reorder window) is slotted in and the filter re-run from a
snapshot taken just before it, so the statistics are what an orderly phone would have
produced. A point that is a duplicate, from the future, far too late, or physically
impossible is refused with a reason and changes nothing.

Distance is the integral of the Kalman filter's speed (summing filtered positions still
counts leftover jitter as distance; the speed estimate does not), counted only while
moving. Across a silent gap (a pause, a tunnel) the speed says nothing about what happened
in between, so the gap counts the straight displacement from the last trusted position to
the new fix instead, and only when it is larger than the fix's own accuracy: standing
still through a gap adds nothing, running through a tunnel adds the way between its ends.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from running.geo import EARTH_RADIUS_M, MAX_RUNNING_SPEED_MPS, Fix, KalmanFilter, LocalPlane

MOVING_SPEED_MPS = 0.7  # slower is standing at a crossing
GAP_S = 5.0  # a longer silence is a gap: counted by displacement, not speed x time
MAX_SPEED_MPS = MAX_RUNNING_SPEED_MPS
SNAPSHOT_EVERY = 8  # points between two filter snapshots (a late point replays at most this many more)
SNAPSHOTS = 64
TRIM_EVERY = 64
DUPLICATE_S = 0.001  # two points of one run this close in device time are one point


class GpsPoint(BaseModel):
    """One point as the phone sends it (``t``: device time, Unix seconds)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    t: float = Field(gt=1_500_000_000, lt=4_000_000_000)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    acc: float = Field(gt=0, le=500, description="reported horizontal accuracy, metres")
    alt: float | None = Field(default=None, ge=-500, le=9000)
    spd: float | None = Field(default=None, ge=0, le=100)
    hr: int | None = Field(default=None, ge=25, le=250)
    cad: int | None = Field(default=None, ge=0, le=300, description="steps (or strides) per minute")


_VALIDATE_POINT = GpsPoint.__pydantic_validator__.validate_python


def parse_point(data: object) -> GpsPoint:
    """``GpsPoint.model_validate`` (the same validator and errors) without its keyword
    handling, which cost as much as the validation: a point a second per live runner."""
    point: GpsPoint = _VALIDATE_POINT(data)
    return point


class Refusal(StrEnum):
    DUPLICATE = "duplicate"
    FUTURE = "timestamp_in_future"
    TOO_OLD = "too_old"
    TOO_LATE = "too_late_to_reorder"
    BEFORE_START = "before_the_start"
    IMPOSSIBLE = "impossible_jump"
    PAUSED = "paused"


@dataclass(frozen=True)
class Accepted:
    late: bool


# Frozen, so one of each serves every point (building one was a microsecond a point).
IN_ORDER, LATE = Accepted(late=False), Accepted(late=True)


@dataclass(frozen=True)
class Refused:
    reason: Refusal


@dataclass
class _Stats:
    distance_m: float = 0.0
    moving_s: float = 0.0
    last_t: float | None = None
    splits: list[float] = field(default_factory=list)  # moving seconds at each full km
    last_xy: tuple[float, float] | None = None  # the last filtered position (local plane)
    marks: dict[float, float] = field(default_factory=dict)  # distance -> device time reached

    def copy(self) -> _Stats:
        return _Stats(self.distance_m, self.moving_s, self.last_t, list(self.splits), self.last_xy, dict(self.marks))


@dataclass
class _Snapshot:
    index: int  # number of points processed before this snapshot
    kalman: KalmanFilter
    stats: _Stats


class Position(NamedTuple):
    """The newest filtered position (a named tuple: one is built per point)."""

    t: float
    lat: float
    lon: float
    speed: float


class LiveTrack:
    def __init__(
        self,
        *,
        started_at: float,
        reorder_window_s: float = 60.0,
        max_future_s: float = 30.0,
        not_before: float | None = None,
        history: bool = False,
        marks: tuple[float, ...] = (),
        pauses: list[list[float | None]] | None = None,
    ) -> None:
        self.started_at = started_at
        # The runner's pauses, [from, to] in device time (to None while paused): points in
        # them are refused, and no distance is counted across one (they may have walked
        # home in between).
        self.pauses: list[list[float | None]] = [list(pause) for pause in pauses or []]
        # Distances whose crossing moment is wanted (a race's finish line, a workout's
        # interval ends), interpolated between the two points that straddle them.
        self._marks = tuple(sorted(marks))
        self._not_before = not_before  # a race's start: earlier points are the warm-up
        self._reorder_window_s = reorder_window_s
        self._max_future_s = max_future_s
        self.points: list[GpsPoint] = []
        self._times: list[float] = []
        self.kept: list[bool] = []  # per point: passed the filter's gate
        self._plane: LocalPlane | None = None
        self._kalman = KalmanFilter(q=0.1)
        self._stats = _Stats()
        self._snapshots: deque[_Snapshot] = deque(maxlen=SNAPSHOTS)
        self.position: Position | None = None
        self.refused: Counter[str] = Counter()
        # (point index, distance, moving seconds) after every kept point.
        self._profile: list[tuple[int, float, float]] = []
        # A live track keeps only the points a late arrival could still need (memory and
        # garbage-collector time stay flat through a long run); a replayed one keeps all.
        self._history = history
        self._dropped = 0
        self._first_t: float | None = None
        self._appended = 0
        self._splits_json: tuple[list[float], int, str] = ([], 0, "")

    # -- ingest ---------------------------------------------------------------------------

    def add(self, point: GpsPoint, *, now: float) -> Accepted | Refused:
        refusal = self._refusal(point, now)
        if refusal is not None:
            self.refused[refusal.value] += 1
            return Refused(refusal)
        if not self._times or point.t > self._times[-1]:
            self._append(point)
            return IN_ORDER
        index = bisect.bisect_left(self._times, point.t)
        self.points.insert(index, point)
        self._times.insert(index, point.t)
        self.kept.insert(index, False)
        self._replay_from(index)
        return LATE

    @property
    def paused(self) -> bool:
        return bool(self.pauses) and self.pauses[-1][1] is None

    def pause(self, at: float) -> bool:
        if self.paused:
            return False
        self.pauses.append([at, None])
        return True

    def resume(self, at: float) -> bool:
        if not self.paused:
            return False
        began = self.pauses[-1][0]
        self.pauses[-1][1] = max(at, began if began is not None else at)
        return True

    def _in_pause(self, t: float) -> bool:
        return any(begin is not None and begin <= t and (end is None or t < end) for begin, end in self.pauses)

    def _paused_between(self, earlier: float, later: float) -> bool:
        return any(begin is not None and earlier <= begin < later for begin, _ in self.pauses)

    def _refusal(self, point: GpsPoint, now: float) -> Refusal | None:
        if point.t > now + self._max_future_s:
            return Refusal.FUTURE
        if self.pauses and self._in_pause(point.t):
            return Refusal.PAUSED
        if point.t < self.started_at - 300:
            return Refusal.TOO_OLD
        if self._not_before is not None and point.t < self._not_before:
            return Refusal.BEFORE_START
        index = bisect.bisect_left(self._times, point.t - 0.0005)
        if index < len(self._times) and abs(self._times[index] - point.t) < DUPLICATE_S:
            return Refusal.DUPLICATE
        if self._times and point.t < self._times[-1] - self._reorder_window_s:
            return Refusal.TOO_LATE
        # A hard physical limit before the statistical gate: a teleport after a gap would
        # otherwise re-anchor the filter there once the gate gives up.
        last = self.position
        if last is not None and point.t > self._times[-1]:
            if _impossible(last.t, last.lat, last.lon, point, 0.0):  # from the last trusted position
                return Refusal.IMPOSSIBLE
        elif self.points:
            # A late point: impossible from both of its neighbours in time.
            after = bisect.bisect_left(self._times, point.t)
            neighbours = [self.points[i] for i in (after - 1, after) if 0 <= i < len(self.points)]
            if all(_impossible(other.t, other.lat, other.lon, point, other.acc) for other in neighbours):
                return Refusal.IMPOSSIBLE
        return None

    def _append(self, point: GpsPoint) -> None:
        self.points.append(point)
        self._times.append(point.t)
        self.kept.append(False)
        self._process(len(self.points) - 1)
        self._appended += 1
        if not self._history and self._appended % TRIM_EVERY == 0:
            self._trim()

    def _trim(self) -> None:
        """Forget points older than the reorder window, up to a snapshot to replay from."""
        cutoff = self._times[-1] - self._reorder_window_s - 5.0
        anchors = [
            item.index
            for item in self._snapshots
            if item.index < len(self._times) and self._times[item.index] <= cutoff
        ]
        if not anchors or anchors[-1] <= 0:
            return
        anchor = anchors[-1]
        del self.points[:anchor], self._times[:anchor], self.kept[:anchor]
        self._dropped += anchor
        for item in self._snapshots:
            item.index -= anchor
        while self._snapshots and self._snapshots[0].index < 0:
            self._snapshots.popleft()

    def _process(self, index: int) -> None:
        point = self.points[index]
        if self._plane is None:
            self._plane = LocalPlane(point.lat, point.lon)
        self._first_t = point.t if self._first_t is None else min(self._first_t, point.t)
        if index == 0 or not self._snapshots or index - self._snapshots[-1].index >= SNAPSHOT_EVERY:
            self._snapshots.append(_Snapshot(index, self._kalman.copy(), self._stats.copy()))
        x, y = self._plane.to_xy(point.lat, point.lon)
        # Silence is time without any point (a point the filter refused was still a sign
        # of life: the phone was tracking, only badly).
        silent = index > 0 and point.t - self.points[index - 1].t > GAP_S
        paused = (
            self._stats.last_t is not None and bool(self.pauses) and self._paused_between(self._stats.last_t, point.t)
        )
        if silent or paused:
            # The velocity from before a gap is stale (the runner may have stopped when the
            # phone went quiet): start the filter afresh on this fix.
            self._kalman = KalmanFilter(q=0.1)
        filtered = self._kalman.update(Fix(point.t, x, y, point.acc))
        if filtered is None:
            return
        self.kept[index] = True
        stats = self._stats
        if stats.last_t is not None:
            dt = point.t - stats.last_t
            step = 0.0
            if paused:
                pass  # where they went during a pause is not part of the run
            elif not silent:
                speed = self._kalman.speed
                step = speed * dt if speed >= MOVING_SPEED_MPS else 0.0
            elif stats.last_xy is not None:
                # After a gap the filter's speed is a guess; where the runner got to is not.
                moved = math.hypot(x - stats.last_xy[0], y - stats.last_xy[1])
                if moved > point.acc and moved >= MOVING_SPEED_MPS * dt:
                    step = moved
            if step > 0.0:
                before = stats.distance_m
                stats.distance_m += step
                stats.moving_s += dt
                for km in range(int(before // 1000) + 1, int(stats.distance_m // 1000) + 1):
                    # Interpolate the moment the km mark was passed.
                    share = (km * 1000 - before) / (stats.distance_m - before)
                    stats.splits.append(stats.moving_s - dt * (1 - share))
                for mark in self._marks:
                    if before < mark <= stats.distance_m and mark not in stats.marks:
                        share = (mark - before) / (stats.distance_m - before)
                        stats.marks[mark] = stats.last_t + dt * share
        stats.last_t = point.t
        stats.last_xy = filtered
        if self._history:
            self._profile.append((index, stats.distance_m, stats.moving_s))
        lat, lon = self._plane.to_latlon(*filtered)
        self.position = Position(point.t, lat, lon, self._kalman.speed)

    def _replay_from(self, index: int) -> None:
        snapshot = next((item for item in reversed(self._snapshots) if item.index <= index), None)
        if snapshot is None:  # older than every snapshot: replay the whole run
            self._kalman, self._stats, start = KalmanFilter(q=0.1), _Stats(), 0
            self._snapshots.clear()
        else:
            self._kalman, self._stats, start = snapshot.kalman, snapshot.stats, snapshot.index
            while self._snapshots and self._snapshots[-1].index >= start:
                self._snapshots.pop()
        while self._profile and self._profile[-1][0] >= start:
            self._profile.pop()
        for position in range(start, len(self.points)):
            self.kept[position] = False
            self._process(position)

    # -- what the runner and the watchers see ---------------------------------------------

    @property
    def profile(self) -> list[tuple[float, float]]:
        """Cumulative (distance, moving seconds) after each kept point."""
        return [(distance, moving) for _, distance, moving in self._profile]

    def kept_positions(self) -> list[tuple[float, float, float]]:
        """(t, lat, lon) of the points the filter kept, as recorded."""
        return [(p.t, p.lat, p.lon) for p, ok in zip(self.points, self.kept, strict=True) if ok]

    @property
    def distance_m(self) -> float:
        return self._stats.distance_m

    @property
    def moving_s(self) -> float:
        return self._stats.moving_s

    def elapsed_s(self) -> float:
        return self._times[-1] - self._first_t if self._times and self._first_t is not None else 0.0

    def stats(self) -> dict[str, object]:
        stats = self._stats
        speed = self.position.speed if self.position else 0.0
        splits = [b - a for a, b in zip([0.0, *stats.splits], stats.splits, strict=False)]
        return {
            "distance_m": round(stats.distance_m, 1),
            "moving_s": round(stats.moving_s, 1),
            "elapsed_s": round(self.elapsed_s(), 1),
            "pace_s_per_km": round(1000 / speed, 1) if speed >= MOVING_SPEED_MPS else None,
            "avg_pace_s_per_km": round(stats.moving_s / (stats.distance_m / 1000), 1)
            if stats.distance_m >= 50
            else None,
            "splits_s": [round(split, 1) for split in splits],
            "points": self._dropped + len(self.points),
            "refused": dict(self.refused),
            "paused": self.paused,
        }

    def stats_json(self) -> str:
        """``stats()`` as the JSON of the runner's ``stats`` frame (its fields after
        ``"type"``), written directly: a runner gets one a second, and encoding the dict
        cost more than the filter. The same text as encoding ``stats()``."""
        stats = self._stats
        speed = self.position.speed if self.position else 0.0
        pace = repr(round(1000 / speed, 1)) if speed >= MOVING_SPEED_MPS else "null"
        average = repr(round(stats.moving_s / (stats.distance_m / 1000), 1)) if stats.distance_m >= 50 else "null"
        splits = self._splits_json
        if splits[0] is not stats.splits or splits[1] != len(stats.splits):
            # Splits only grow (a late point's replay restores an older list object).
            laps = [b - a for a, b in zip([0.0, *stats.splits], stats.splits, strict=False)]
            splits = self._splits_json = (stats.splits, len(stats.splits), ",".join(repr(round(x, 1)) for x in laps))
        refused = ",".join(f'"{reason}":{count}' for reason, count in self.refused.items())
        return (
            f'"distance_m":{round(stats.distance_m, 1)!r},"moving_s":{round(stats.moving_s, 1)!r},'
            f'"elapsed_s":{round(self.elapsed_s(), 1)!r},"pace_s_per_km":{pace},"avg_pace_s_per_km":{average},'
            f'"splits_s":[{splits[2]}],"points":{self._dropped + len(self.points)},"refused":{{{refused}}},'
            f'"paused":{"true" if self.paused else "false"}'
        )

    @property
    def first_t(self) -> float | None:
        """Device time of the earliest accepted point (a racer's own start)."""
        return self._first_t

    def reached_at(self, metres: float) -> float | None:
        """Device time at which ``metres`` (one of the track's marks) was reached,
        interpolated between the two points either side of it; None if not yet."""
        return self._stats.marks.get(metres)


def _impossible(t: float, lat: float, lon: float, point: GpsPoint, slack_m: float) -> bool:
    jump = _metres(lat, lon, point.lat, point.lon) - point.acc - slack_m
    return jump > MAX_SPEED_MPS * abs(point.t - t) + 50.0


def _metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi = math.radians((lat1 + lat2) / 2)
    dx = math.radians(lon2 - lon1) * EARTH_RADIUS_M * math.cos(phi)
    dy = math.radians(lat2 - lat1) * EARTH_RADIUS_M
    return math.hypot(dx, dy)
