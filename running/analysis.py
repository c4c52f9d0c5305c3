"""A finished run's summary from its points: the track as filtered, splits, a pace chart,
elevation and heart-rate zones (pure)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from running.track import GpsPoint, LiveTrack

# Five zones as shares of the maximum heart rate, or of the heart-rate reserve (max -
# resting, Karvonen) when the resting rate is known: the same bounds, a fairer scale for a
# fit runner with a low resting pulse.
HR_ZONES = ((-10.0, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 10.0))
DEFAULT_MAX_HR = 190
PACE_CHART_STEP_M = 250.0
ELEVATION_SMOOTHING = 5
RECORD_DISTANCES = (1000, 5000, 10000, 21097.5, 42195)


def replay(points: Sequence[GpsPoint], *, pauses: list[list[float | None]] | None = None) -> LiveTrack:
    ordered = sorted(points, key=lambda point: point.t)
    track = LiveTrack(started_at=ordered[0].t if ordered else 0.0, reorder_window_s=0.0, history=True, pauses=pauses)
    latest = ordered[-1].t if ordered else 0.0
    for point in ordered:
        track.add(point, now=latest)
    return track


@dataclass(frozen=True)
class HeartRates:
    max_hr: int = DEFAULT_MAX_HR
    resting_hr: int | None = None
    source: str = "default"  # profile | history | default


def summarise(points: Sequence[GpsPoint], *, heart: HeartRates | None = None) -> dict[str, Any]:
    return summarise_track(replay(points), heart=heart)


def filtered_positions(track: LiveTrack) -> list[list[float]]:
    return [[round(t, 3), round(lat, 7), round(lon, 7)] for t, lat, lon in track.kept_positions()]


def summarise_track(track: LiveTrack, *, heart: HeartRates | None = None) -> dict[str, Any]:
    stats = track.stats()
    kept = [point for point, ok in zip(track.points, track.kept, strict=True) if ok]
    return {
        "distance_m": stats["distance_m"],
        "moving_s": stats["moving_s"],
        "elapsed_s": stats["elapsed_s"],
        "avg_pace_s_per_km": stats["avg_pace_s_per_km"],
        "splits_s": stats["splits_s"],
        "pace_chart": _pace_chart(track),
        "elevation": _elevation(kept),
        "heart_rate": _heart_rate(kept, heart or HeartRates()),
        "best_efforts_s": _best_efforts(track),
        "points": len(track.points),
        "refused": stats["refused"],
        "paused_s": round(sum((end or begin or 0.0) - (begin or 0.0) for begin, end in track.pauses), 1),
    }


def _pace_chart(track: LiveTrack) -> list[dict[str, float]]:
    """Pace (s/km) every 250 m, from the km splits' finer cousin: the cumulative profile."""
    profile = track.profile
    chart: list[dict[str, float]] = []
    mark, last_distance, last_time = PACE_CHART_STEP_M, 0.0, 0.0
    for distance, moving in profile:
        while distance >= mark:
            share = (mark - last_distance) / max(distance - last_distance, 1e-9)
            at = last_time + share * (moving - last_time)
            previous = chart[-1]["moving_s"] if chart else 0.0
            chart.append({"distance_m": mark, "moving_s": round(at, 1), "pace_s_per_km": round((at - previous) * 4, 1)})
            mark += PACE_CHART_STEP_M
        last_distance, last_time = distance, moving
    return chart


def _elevation(points: Sequence[GpsPoint]) -> dict[str, Any]:
    altitudes = [point.alt for point in points if point.alt is not None]
    if len(altitudes) < 2:
        return {"gain_m": None, "loss_m": None, "profile": []}
    smooth = []
    for index in range(len(altitudes)):
        window = altitudes[max(0, index - ELEVATION_SMOOTHING + 1) : index + 1]
        smooth.append(sum(window) / len(window))
    gain = sum(max(0.0, b - a) for a, b in itertools.pairwise(smooth))
    loss = sum(max(0.0, a - b) for a, b in itertools.pairwise(smooth))
    step = max(1, len(smooth) // 200)
    return {"gain_m": round(gain, 1), "loss_m": round(loss, 1), "profile": [round(v, 1) for v in smooth[::step]]}


def _heart_rate(points: Sequence[GpsPoint], heart: HeartRates) -> dict[str, Any] | None:
    samples = [(point.t, point.hr) for point in points if point.hr is not None]
    if len(samples) < 2:
        return None
    seconds = [0.0] * len(HR_ZONES)
    rest = heart.resting_hr if heart.resting_hr is not None and heart.resting_hr < heart.max_hr else 0
    for (t, hr), (next_t, _) in itertools.pairwise(samples):
        share = (hr - rest) / (heart.max_hr - rest)
        zone = next(index for index, (low, high) in enumerate(HR_ZONES) if low <= share < high)
        seconds[zone] += min(next_t - t, 30.0)
    rates = [hr for _, hr in samples]
    return {
        "average": round(sum(rates) / len(rates)),
        "max": max(rates),
        "zones_s": [round(value, 1) for value in seconds],
        "max_hr_used": heart.max_hr,
        "resting_hr_used": heart.resting_hr,
        "zones_from": heart.source,
    }


def _best_efforts(track: LiveTrack) -> dict[str, float]:
    """Fastest moving time over each record distance anywhere in the run (two pointers over
    the cumulative profile)."""
    profile = track.profile
    best: dict[str, float] = {}
    for target in RECORD_DISTANCES:
        if not profile or profile[-1][0] < target:
            continue
        start, fastest = 0, float("inf")
        for end in range(len(profile)):
            # Move the start up while the window would still cover the distance.
            while start + 1 <= end and profile[end][0] - profile[start + 1][0] >= target:
                start += 1
            if profile[end][0] - profile[start][0] >= target:
                fastest = min(fastest, profile[end][1] - profile[start][1])
        best[str(int(target)) if target == int(target) else str(target)] = round(fastest, 1)
    return best
