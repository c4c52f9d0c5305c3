"""Geometry and GPS filtering for runs (pure functions and small state machines, no I/O).

Positions are filtered in a local east/north plane in metres around the run's first
point (an equirectangular projection: at running distances its error is far below GPS
noise). Three filters share one interface so they can be compared on the same tracks:

- :class:`RawFilter` takes every point as it comes;
- :class:`OutlierOnlyFilter` drops a point that implies an impossible speed from the last
  kept one;
- :class:`KalmanFilter` is a constant-velocity Kalman filter whose measurement noise is
  the accuracy the phone reports, with an innovation gate (Mahalanobis distance) that
  rejects multipath spikes; after a run of rejections (a tunnel exit, a long gap) it
  re-anchors on the measurement instead of rejecting forever.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

EARTH_RADIUS_M = 6_371_008.8
# Above this the runner is in a car (or the point is wrong): 12 m/s is a 1:23 km pace.
MAX_RUNNING_SPEED_MPS = 12.0
# 99.9 % of a two-dimensional Gaussian lies inside this squared Mahalanobis distance.
GATE_CHI2 = 13.8
REANCHOR_AFTER = 5


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlmb = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True)
class LocalPlane:
    """East/north metres around an origin, and back."""

    lat0: float
    lon0: float
    # The origin's cosine, once (twice a point on a live run's path); the arithmetic is
    # otherwise unchanged, to the last bit.
    _cos: float = field(init=False, repr=False, compare=False, default=0.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cos", math.cos(math.radians(self.lat0)))

    def to_xy(self, lat: float, lon: float) -> tuple[float, float]:
        x = math.radians(lon - self.lon0) * EARTH_RADIUS_M * self._cos
        y = math.radians(lat - self.lat0) * EARTH_RADIUS_M
        return x, y

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        lat = self.lat0 + math.degrees(y / EARTH_RADIUS_M)
        lon = self.lon0 + math.degrees(x / (EARTH_RADIUS_M * self._cos))
        return lat, lon


class Fix(NamedTuple):
    """One measurement in the local plane: time (s), position (m), reported accuracy (m).
    A named tuple: one per point of every live run, built in a fraction of a frozen
    dataclass's time."""

    t: float
    x: float
    y: float
    accuracy: float


class TrackFilter(Protocol):
    def update(self, fix: Fix) -> tuple[float, float] | None:
        """The filtered position for ``fix``, or None when the point is rejected."""
        ...


class RawFilter:
    def update(self, fix: Fix) -> tuple[float, float] | None:
        return fix.x, fix.y


class OutlierOnlyFilter:
    """Drops points that imply running faster than ``max_speed`` from the last kept point
    (allowing for both points' reported accuracy)."""

    def __init__(self, max_speed: float = MAX_RUNNING_SPEED_MPS) -> None:
        self._max_speed = max_speed
        self._last: Fix | None = None
        self._rejected_in_a_row = 0

    def update(self, fix: Fix) -> tuple[float, float] | None:
        last = self._last
        if last is not None and self._rejected_in_a_row < REANCHOR_AFTER:
            dt = max(fix.t - last.t, 1e-3)
            jump = math.hypot(fix.x - last.x, fix.y - last.y) - fix.accuracy - last.accuracy
            if jump > self._max_speed * dt:
                self._rejected_in_a_row += 1
                return None
        self._last, self._rejected_in_a_row = fix, 0
        return fix.x, fix.y


class KalmanFilter:
    """State (x, y, vx, vy); white-noise acceleration model with spectral density ``q``.

    Both axes share the same model, the same (isotropic) measurement noise and the same
    start, so the 4x4 covariance never couples them: it is one 2x2 block per axis, and
    the two blocks are equal. The filter keeps that block (three numbers) and runs in
    plain floats — numpy on 4x4 matrices cost ~100 µs a point, most of a live point's
    CPU; this is the same arithmetic in a few µs."""

    __slots__ = ("_gate", "_pvv", "_pxv", "_pxx", "_q", "_rejected_in_a_row", "_state", "_t", "rejected")

    def __init__(self, q: float = 0.5, gate: float = GATE_CHI2) -> None:
        self._q = q
        self._gate = gate
        self._state: tuple[float, float, float, float] | None = None
        # One axis's covariance: position variance, position-velocity, velocity variance.
        self._pxx, self._pxv, self._pvv = 1.0, 0.0, 1.0
        self._t = 0.0
        self._rejected_in_a_row = 0
        self.rejected = 0

    def update(self, fix: Fix) -> tuple[float, float] | None:
        variance = max(fix.accuracy, 1.0) ** 2
        if self._state is None or self._rejected_in_a_row >= REANCHOR_AFTER:
            self._anchor(fix, variance)
            return fix.x, fix.y
        dt = max(fix.t - self._t, 1e-3)
        q = self._q
        x, y, vx, vy = self._state
        # Predict: x += v dt; P = F P F^T + Q (per axis).
        x, y = x + vx * dt, y + vy * dt
        pxx, pxv, pvv = self._pxx, self._pxv, self._pvv
        pxx = pxx + 2 * dt * pxv + dt * dt * pvv + q * dt * dt * dt / 3
        pxv = pxv + dt * pvv + q * dt * dt / 2
        pvv = pvv + q * dt
        ix, iy = fix.x - x, fix.y - y
        s = pxx + variance  # innovation variance, the same on both axes
        if (ix * ix + iy * iy) / s > self._gate:
            # A spike: keep the prediction's time base untouched, forget the point.
            self._rejected_in_a_row += 1
            self.rejected += 1
            return None
        kx, kv = pxx / s, pxv / s
        self._state = (x + kx * ix, y + kx * iy, vx + kv * ix, vy + kv * iy)
        self._pxx, self._pxv, self._pvv = (1 - kx) * pxx, (1 - kx) * pxv, pvv - kv * pxv
        self._t = fix.t
        self._rejected_in_a_row = 0
        return self._state[0], self._state[1]

    def copy(self) -> KalmanFilter:
        twin = KalmanFilter(self._q, self._gate)
        twin._state = self._state
        twin._pxx, twin._pxv, twin._pvv = self._pxx, self._pxv, self._pvv
        twin._t, twin._rejected_in_a_row, twin.rejected = self._t, self._rejected_in_a_row, self.rejected
        return twin

    @property
    def speed(self) -> float:
        """The filtered ground speed (m/s)."""
        if self._state is None:
            return 0.0
        return math.hypot(self._state[2], self._state[3])

    def _anchor(self, fix: Fix, variance: float) -> None:
        self._state = (fix.x, fix.y, 0.0, 0.0)
        self._pxx, self._pxv, self._pvv = variance, 0.0, 9.0  # speed unknown: ±3 m/s
        self._t = fix.t
        self._rejected_in_a_row = 0


def path_length(points: list[tuple[float, float]]) -> float:
    return sum(math.hypot(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(points))
