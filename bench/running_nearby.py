"""Runners nearby: query latency and update throughput of the nearby index at 10,000 live
runners (opted in) spread over Seoul, bunched in parks and along the river as runners are.

    python bench/running_nearby.py [--runners 10000] [--queries 5000] [--seconds 10]

Measures, in one process (the index is in-process on every replica):
- ``nearby_query_p95_ms``: one "who is within 1 km of me" query, including coarsening of
  the querier's own position, over --queries queries from random runners' positions;
- ``nearby_updates_per_s``: coarsen + index update of a moving runner, sustained for a
  few seconds (what every replica applies for every opted-in runner every 5 s);
- against the baseline measured in the same run: a linear scan over every runner.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import emit, fail, machine, percentile, spread_cells, summary, table
from running.nearby import NearbyIndex, PrivacyZone, coarsen, metres

HOTSPOTS = [(37.5444, 127.0374), (37.5283, 126.9346), (37.5172, 127.0473), (37.5665, 126.9780), (37.5700, 127.0090)]


def positions(rng: random.Random, count: int) -> list[tuple[float, float]]:
    out = []
    for _ in range(count):
        if rng.random() < 0.7:  # most runners are in a few parks
            lat, lon = rng.choice(HOTSPOTS)
            out.append((lat + rng.gauss(0, 0.01), lon + rng.gauss(0, 0.012)))
        else:  # the rest anywhere in a 20 km square
            out.append((37.45 + rng.random() * 0.18, 126.90 + rng.random() * 0.23))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runners", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    rng = random.Random(7)
    where = positions(rng, args.runners)
    zones = (PrivacyZone(37.50, 127.10, 300),)
    index = NearbyIndex(expire_s=3600)
    names = [f"runner-{number}" for number in range(args.runners)]
    for number, (lat, lon) in enumerate(where):
        coarse = coarsen(lat, lon, zones)
        if coarse is not None:
            index.update(names[number], names[number], *coarse)

    latencies, found = [], []
    for _ in range(args.queries):
        number = rng.randrange(args.runners)
        lat, lon = where[number]
        started = time.perf_counter()
        hits = index.query(lat, lon, 1000.0, exclude=names[number])
        latencies.append((time.perf_counter() - started) * 1000)
        found.append(len(hits))

    # Baseline: the same question asked by scanning every runner.
    scan = []
    for _ in range(min(args.queries, 300)):
        lat, lon = where[rng.randrange(args.runners)]
        started = time.perf_counter()
        _ = [other for other in where if metres(lat, lon, other[0], other[1]) <= 1000.0]
        scan.append((time.perf_counter() - started) * 1000)

    updates, failures = 0, 0
    deadline = time.perf_counter() + args.seconds
    while time.perf_counter() < deadline:
        for _ in range(1000):
            number = rng.randrange(args.runners)
            lat, lon = where[number]
            lat, lon = lat + rng.gauss(0, 0.0002), lon + rng.gauss(0, 0.0002)  # ~20 m on
            where[number] = (lat, lon)
            try:
                coarse = coarsen(lat, lon, zones)
                if coarse is None:
                    index.remove(names[number])
                else:
                    index.update(names[number], names[number], *coarse)
                updates += 1
            except Exception:
                failures += 1
    elapsed = args.seconds
    if failures:
        fail(f"{failures} index updates raised")
    updates_per_s = updates / elapsed

    print(f"\nrunners nearby - {machine()}")
    table(
        f"1 km queries among {args.runners:,} runners (ms)",
        ["method", "n", "p50", "p95", "p99", "found (median)"],
        [
            ["geohash cells", *spread_cells(summary(latencies), digits=3), statistics.median(found)],
            ["linear scan (baseline)", *spread_cells(summary(scan), digits=3), "-"],
        ],
    )  # fmt: skip
    table("updates (coarsen + index)", ["n", "per second", "failures"], [[updates, f"{updates_per_s:,.0f}", failures]])
    emit(
        {
            "nearby_runners": args.runners,
            "nearby_query_n": len(latencies),
            "nearby_query_p50_ms": round(statistics.median(latencies), 4),
            "nearby_query_p95_ms": round(percentile(latencies, 95), 4),
            "nearby_query_p99_ms": round(percentile(latencies, 99), 4),
            "nearby_scan_p95_ms": round(percentile(scan, 95), 4),
            "nearby_scan_n": len(scan),
            "nearby_speedup_p95": round(percentile(scan, 95) / percentile(latencies, 95), 1),
            "nearby_updates_per_s": round(updates_per_s),
            "nearby_updates_n": updates,
            "nearby_update_failures": failures,
        }
    )


if __name__ == "__main__":
    main()
