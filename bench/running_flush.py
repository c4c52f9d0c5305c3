"""Running's flush of live points: one transaction writing every live run's new points
(a chunk row per run) and its progress, every ``SMARTGYM_RUNNING_FLUSH_INTERVAL_S``.

It runs in the replica's event loop, so its CPU is also a stall every watcher's
positions wait behind. Two statement shapes of ``running.runs``, timed in the same run on
the same database, in alternating order:

- **arrays** (what PostgreSQL gets): one ``INSERT ... SELECT FROM unnest`` for the chunks
  and one ``UPDATE ... FROM unnest`` for the progress, parameters as binary arrays;
- **executemany** (what SQLite gets; PostgreSQL's chunks went this way before): a row
  per run and statement, through psycopg's pipeline.

Each flush is timed for client CPU (``time.process_time``: encoding and the protocol,
what stalls the loop) and wall time (the server's work included); n is printed beside
every percentile. The runs exist beforehand (the progress update finds its rows).

    python bench/running_flush.py [--runs 2000] [--points 5] [--flushes 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Table, insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from bench._common import emit, ensure_services, fail, figure, machine, progress, spread_cells, summary, table
from common.migrations import upgrade
from running.models import Run
from running.runs import (
    _INSERT_CHUNKS,
    _INSERT_CHUNKS_ARRAYS,
    _UPDATE_PROGRESS,
    _UPDATE_PROGRESS_ARRAYS,
    _as_arrays,
    _chunk_arrays,
)
from tests.support.infra import PG_ADMIN_URL, PostgresDatabases

RUNS = cast(Table, Run.__table__)


def flush_rows(run_ids: list[uuid.UUID], points: int, flush: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What ``save_points`` builds for one flush: a chunk and a progress row per run."""
    now = datetime.now(UTC)
    start = 1_780_000_000.0 + flush * points
    chunks = [
        {
            "run_id": run_id,
            "first_t": start,
            "points": [
                [start + k, 37.5 + n * 1e-4 + k * 1e-5, 127.0 + k * 1e-5, 4.0, 31.0, 152] for k in range(points)
            ],
            "created_at": now,
        }
        for n, run_id in enumerate(run_ids)
    ]
    progress_rows = [
        {
            "b_run_id": run_id,
            "distance_m": 1000.0 + flush * 15.0,
            "moving_s": 300.0 + flush * points,
            "elapsed_s": 310.0 + flush * points,
            "refused": {"duplicate": 1},
            "laps": [{"t": 1_780_000_100.0, "distance_m": 1000.0}],
            "pauses": [],
            "workout": None,
            "updated_at": now,
        }
        for run_id in run_ids
    ]
    return chunks, progress_rows


async def run(args: argparse.Namespace) -> None:
    ensure_services()
    databases = PostgresDatabases(PG_ADMIN_URL)
    url = databases.create("bench_flush")
    try:
        upgrade("running", url)
        engine = create_async_engine(url)
        run_ids = [uuid.uuid4() for _ in range(args.runs)]
        now = datetime.now(UTC)
        async with engine.begin() as connection:
            await connection.execute(insert(RUNS), [
                {"run_id": run_id, "user_id": uuid.uuid4(), "status": "live", "source": "live", "title": "bench",
                 "started_at": now, "summary": {}, "updated_at": now}
                for run_id in run_ids
            ])  # fmt: skip
        timings: dict[str, dict[str, list[float]]] = {
            shape: {"cpu": [], "wall": []} for shape in ("arrays", "executemany")
        }
        progress(f"{args.flushes} flushes per shape of {args.runs} runs x {args.points} points")
        for flush in range(args.flushes):
            order = ("arrays", "executemany") if flush % 2 == 0 else ("executemany", "arrays")
            for shape in order:
                chunks, progress_rows = flush_rows(run_ids, args.points, flush)
                cpu, wall = time.process_time(), time.perf_counter()
                async with engine.begin() as connection:
                    if shape == "arrays":
                        await connection.execute(_INSERT_CHUNKS_ARRAYS, _chunk_arrays(chunks, now))
                        await connection.execute(_UPDATE_PROGRESS_ARRAYS, _as_arrays(progress_rows, now))
                    else:
                        await connection.execute(_INSERT_CHUNKS, chunks)
                        await connection.execute(_UPDATE_PROGRESS, progress_rows)
                timings[shape]["cpu"].append((time.process_time() - cpu) * 1e3)
                timings[shape]["wall"].append((time.perf_counter() - wall) * 1e3)
        async with engine.connect() as connection:
            stored = (await connection.execute(text("SELECT count(*) FROM run_chunks"))).scalar_one()
        await engine.dispose()
    finally:
        databases.drop_all()
    expected = 2 * args.flushes * args.runs
    figures: dict[str, Any] = {"machine": machine(), "runs": args.runs, "points_per_run": args.points,
                               "chunks_stored": stored, "chunks_expected": expected}  # fmt: skip
    if stored != expected:
        fail(f"{stored} chunk rows stored, {expected} written")
    rows = []
    for shape, timing in timings.items():
        cpu_ms, wall_ms = summary(timing["cpu"]), summary(timing["wall"])
        rows.append([shape, *spread_cells(cpu_ms), *spread_cells(wall_ms)[1:]])
        figures[f"flush_{shape}_cpu_ms_p50"] = round(cpu_ms["p50"], 2)
        figures[f"flush_{shape}_cpu_ms_p99"] = figure(cpu_ms["p99"])
        figures[f"flush_{shape}_wall_ms_p50"] = round(wall_ms["p50"], 2)
        figures[f"flush_{shape}_wall_ms_p99"] = figure(wall_ms["p99"])
        figures[f"flush_{shape}_n"] = int(cpu_ms["n"])
    table(
        f"\nrunning flush - {machine()}: {args.runs} runs x {args.points} new points, one transaction (ms)",
        ["statements", "n", "CPU p50", "CPU p95", "CPU p99", "wall p50", "wall p95", "wall p99"],
        rows,
    )
    ratios = [a / b for a, b in zip(timings["arrays"]["cpu"], timings["executemany"]["cpu"], strict=True)]
    figures["flush_arrays_cpu_ratio_to_executemany"] = round(statistics.median(ratios), 3)
    print(f"arrays / executemany, client CPU, median of {len(ratios)} paired flushes: "
          f"{figures['flush_arrays_cpu_ratio_to_executemany']:.2f}")  # fmt: skip
    emit(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="live runs on the replica")
    parser.add_argument("--points", type=int, default=5, help="new points per run (5 s at a point a second)")
    parser.add_argument("--flushes", type=int, default=100, help="flushes timed per statement shape")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
