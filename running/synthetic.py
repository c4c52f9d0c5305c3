"""Realistic noisy GPS tracks with a known true path, for tests and benchmarks.

The truth is a runner at a varying pace along a course of straights and curves (or a
loop), sampled once a second. Each reported point gets Gaussian noise scaled to the
accuracy the phone would report (better in the open, worse between buildings), and now
and then a multipath spike of tens to hundreds of metres with an optimistic accuracy —
the failure that fools naive filters.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from running.geo import LocalPlane

SEOUL_FOREST = (37.5444, 127.0374)


@dataclass(frozen=True)
class TruePoint:
    t: float
    x: float
    y: float


@dataclass(frozen=True)
class Sample:
    t: float
    lat: float
    lon: float
    accuracy: float
    altitude: float
    heart_rate: int


@dataclass(frozen=True)
class SyntheticTrack:
    plane: LocalPlane
    truth: list[TruePoint]
    samples: list[Sample]

    @property
    def true_distance_m(self) -> float:
        return sum(math.hypot(b.x - a.x, b.y - a.y) for a, b in zip(self.truth, self.truth[1:], strict=False))


def generate(
    seed: int,
    *,
    seconds: int = 1800,
    pace_mps: float = 3.0,
    spike_rate: float = 0.02,
    origin: tuple[float, float] = SEOUL_FOREST,
    start_time: float = 1_790_000_000.0,
) -> SyntheticTrack:
    rng = random.Random(seed)
    plane = LocalPlane(*origin)
    heading = rng.uniform(0, 2 * math.pi)
    turn_rate = 0.0
    x = y = 0.0
    truth: list[TruePoint] = []
    samples: list[Sample] = []
    canyon_until = -1
    for second in range(seconds):
        t = start_time + second
        truth.append(TruePoint(t, x, y))
        if second > canyon_until and rng.random() < 0.004:
            canyon_until = second + rng.randint(30, 120)  # between tall buildings for a while
        base_accuracy = rng.uniform(14, 26) if second <= canyon_until else rng.uniform(4, 10)
        sigma = base_accuracy / 1.5  # a reported accuracy is roughly a 68 % radius
        nx, ny = rng.gauss(0, sigma), rng.gauss(0, sigma)
        accuracy = base_accuracy
        if rng.random() < spike_rate:
            distance, angle = rng.uniform(40, 250), rng.uniform(0, 2 * math.pi)
            nx, ny = distance * math.cos(angle), distance * math.sin(angle)
            accuracy = rng.uniform(5, 15)  # multipath: the phone is confident and wrong
        lat, lon = plane.to_latlon(x + nx, y + ny)
        samples.append(
            Sample(
                t=t,
                lat=lat,
                lon=lon,
                accuracy=round(accuracy, 1),
                altitude=30 + 8 * math.sin(second / 300),
                heart_rate=int(135 + 25 * math.sin(second / 400) + rng.gauss(0, 2)),
            )
        )
        # Pace drifts, the course bends now and then.
        speed = max(1.5, pace_mps + 0.4 * math.sin(second / 97) + rng.gauss(0, 0.05))
        if rng.random() < 0.02:
            turn_rate = rng.uniform(-0.08, 0.08)
        elif rng.random() < 0.05:
            turn_rate = 0.0
        heading += turn_rate
        x += speed * math.cos(heading)
        y += speed * math.sin(heading)
    return SyntheticTrack(plane, truth, samples)


def position_errors(seeds: range, *, seconds: int = 1800) -> dict[str, list[float]]:
    """Each filter's distance from the true position at every point it kept, over the
    generated tracks of ``seeds`` (the comparison the design's "±15 m → ±5 m" is about)."""
    from running.geo import Fix, KalmanFilter, OutlierOnlyFilter, RawFilter, TrackFilter

    errors: dict[str, list[float]] = {"raw": [], "outlier_only": [], "kalman": []}
    for seed in seeds:
        track = generate(seed, seconds=seconds)
        filters: dict[str, TrackFilter] = {
            "raw": RawFilter(),
            "outlier_only": OutlierOnlyFilter(),
            "kalman": KalmanFilter(q=0.1),
        }
        for truth, sample in zip(track.truth, track.samples, strict=True):
            x, y = track.plane.to_xy(sample.lat, sample.lon)
            for name, track_filter in filters.items():
                estimate = track_filter.update(Fix(sample.t, x, y, sample.accuracy))
                if estimate is not None:
                    errors[name].append(math.hypot(estimate[0] - truth.x, estimate[1] - truth.y))
    return errors
