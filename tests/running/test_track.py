"""The live track and the filters, on generated tracks with a known true path."""

from __future__ import annotations

import json
import math
import random

from running.synthetic import generate, position_errors
from running.track import Accepted, GpsPoint, LiveTrack, Refusal, Refused

NOW = 1_790_100_000.0


def points(seed: int = 7, seconds: int = 1200) -> tuple[list[GpsPoint], float]:
    track = generate(seed, seconds=seconds, start_time=NOW - seconds)
    samples = [
        GpsPoint(t=s.t, lat=s.lat, lon=s.lon, acc=s.accuracy, alt=s.altitude, hr=s.heart_rate) for s in track.samples
    ]
    return samples, track.true_distance_m


def feed(sequence: list[GpsPoint]) -> LiveTrack:
    track = LiveTrack(started_at=sequence[0].t)
    for point in sequence:
        track.add(point, now=NOW)
    return track


def test_distance_splits_and_pace_match_the_true_course():
    sequence, truth = points()
    track = feed(sequence)
    stats = track.stats()
    assert abs(stats["distance_m"] - truth) / truth < 0.02  # within 2 % of the true path
    assert len(stats["splits_s"]) == int(stats["distance_m"] // 1000)
    # Splits agree with the moving time: their sum is the time at the last full km.
    assert sum(stats["splits_s"]) <= stats["moving_s"]
    assert 250 < stats["avg_pace_s_per_km"] < 450  # the generator runs ~3 m/s


def test_out_of_order_and_duplicated_points_give_the_same_run():
    sequence, _ = points()
    rng = random.Random(3)
    messy = list(sequence)
    for index in range(0, len(messy) - 5, 9):  # neighbours overtake each other
        messy[index], messy[index + 3] = messy[index + 3], messy[index]
    messy += rng.sample(sequence[-50:], 40)  # retried sends (older ones are simply too late)
    orderly, shuffled = feed(sequence), feed(messy)
    assert shuffled.refused[Refusal.DUPLICATE.value] == 40
    assert math.isclose(shuffled.distance_m, orderly.distance_m, rel_tol=1e-6)
    assert shuffled.stats()["splits_s"] == orderly.stats()["splits_s"]


def test_a_burst_after_a_tunnel_is_taken_in_order():
    sequence, _ = points()
    held = sequence[300:355]  # most of a minute underground, then sent at once, newest first
    track = LiveTrack(started_at=sequence[0].t)
    for point in sequence[:300]:
        track.add(point, now=NOW)
    outcomes = [track.add(point, now=NOW) for point in reversed(held)]
    assert all(isinstance(outcome, Accepted) for outcome in outcomes)
    assert sum(1 for outcome in outcomes if isinstance(outcome, Accepted) and outcome.late) == len(held) - 1
    reference = feed(sequence[:355])
    assert math.isclose(track.distance_m, reference.distance_m, rel_tol=1e-6)


def test_teleports_future_points_and_stale_points_change_nothing():
    sequence, _ = points(seconds=300)
    track = feed(sequence[:200])
    before = track.stats()
    last = sequence[199]
    teleport = last.model_copy(update={"t": last.t + 1, "lat": last.lat + 0.05})  # 5.5 km in a second
    future = last.model_copy(update={"t": NOW + 3600})
    stale = sequence[10].model_copy(update={"t": last.t - 120.5})
    assert track.add(teleport, now=NOW) == Refused(Refusal.IMPOSSIBLE)
    assert track.add(future, now=NOW) == Refused(Refusal.FUTURE)
    assert track.add(stale, now=NOW) == Refused(Refusal.TOO_LATE)
    assert track.stats()["distance_m"] == before["distance_m"]
    assert isinstance(track.add(sequence[200], now=NOW), Accepted)  # and the run goes on


def test_kalman_beats_raw_and_outlier_only_on_position_error():
    errors = position_errors(range(3), seconds=900)
    mean = {name: sum(values) / len(values) for name, values in errors.items()}
    assert mean["kalman"] < mean["outlier_only"] < mean["raw"]
    assert mean["kalman"] < 6.0  # the design's "±15 m → ±5 m"
    assert mean["raw"] > 2 * mean["kalman"]


def _run_then_stand(gap_s: float, *, stood_s: int, seed: int = 3) -> tuple[float, float]:
    """A minute running east at 3 m/s, ``stood_s`` standing, silence for ``gap_s``, 15 s
    more standing at the same spot: the distance before the gap and at the end."""
    rng = random.Random(seed)
    lat0, lon0 = 37.52, 127.0
    metre_lon = 1 / (111_320 * math.cos(math.radians(lat0)))
    t0 = NOW - 400

    def at(t: float, east_m: float) -> GpsPoint:
        return GpsPoint(
            t=t, lat=lat0 + rng.gauss(0, 2) / 111_320, lon=lon0 + (east_m + rng.gauss(0, 2)) * metre_lon, acc=5.0
        )

    running = [at(t0 + second, 3.0 * second) for second in range(60)]
    standing = [at(t0 + 60 + second, 180.0) for second in range(stood_s)]
    after = [at(t0 + 60 + stood_s + gap_s + second, 180.0) for second in range(15)]
    track = LiveTrack(started_at=t0)
    for point in running + standing:
        track.add(point, now=NOW)
    before = track.distance_m
    for point in after:
        track.add(point, now=NOW)
    return before, track.distance_m


def test_a_silent_gap_standing_still_adds_no_distance():
    # Stopping at a crossing and the phone going quiet at once (auto-pause), or after a while.
    for stood in (0, 15):
        for gap in (6.0, 25.0, 120.0):
            before, end = _run_then_stand(gap, stood_s=stood)
            assert end - before < 3.0, f"{gap} s gap after {stood} s standing added {end - before:.1f} m"


def test_a_tunnel_counts_the_way_between_its_ends():
    # Running straight through 40 s without points: ~120 m by displacement.
    rng = random.Random(5)
    t0 = NOW - 400
    metre_lon = 1 / (111_320 * math.cos(math.radians(37.52)))
    points = [
        GpsPoint(t=t0 + second, lat=37.52 + rng.gauss(0, 2) / 111_320, lon=127.0 + 3.0 * second * metre_lon, acc=5.0)
        for second in [*range(60), *range(100, 160)]
    ]
    track = LiveTrack(started_at=t0)
    for point in points:
        track.add(point, now=NOW)
    assert 159 * 3.0 * 0.95 < track.distance_m < 159 * 3.0 * 1.05


def test_the_stats_frame_is_the_encoded_stats_through_splits_refusals_pauses_and_late_points():
    sequence, _ = points()
    track = LiveTrack(started_at=sequence[0].t)
    frames = []
    for index, point in enumerate(sequence[:1500]):
        track.add(point, now=NOW)
        if index % 50 == 0:
            track.add(point, now=NOW)  # a duplicate: refused, counted
        if index == 700:
            track.pause(point.t + 0.5)
        if index == 760:
            track.resume(point.t)
        if index % 10 == 9 and index > 20:
            track.add(sequence[index - 15], now=NOW)  # late (or duplicate): a replay
        frames.append((json.dumps(track.stats(), separators=(",", ":")), "{" + track.stats_json() + "}"))
    assert track.stats()["splits_s"]
    assert track.stats()["refused"]
    for expected, written in frames:
        assert written == expected
        assert json.loads(written) == json.loads(expected)
    empty = LiveTrack(started_at=NOW)
    assert "{" + empty.stats_json() + "}" == json.dumps(empty.stats(), separators=(",", ":"))
