"""Running's flush of live points, every ``SMARTGYM_RUNNING_FLUSH_INTERVAL_S``: the
statements writing every live run's new points (a chunk row per run) and its progress,
and how long the replica's flush holds its event loop.

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

Then the replica's own flush (``LiveServer.flush``: rows built from each live run's
buffered points, the statements; no runner sockets are connected here, so no
acknowledgements are sent) of as many runs, in the app, for the longest time it holds
the event loop without a turn for the sockets: in slices of ``FLUSH_SLICE_RUNS`` runs
(what the replica does) against every run in one transaction, alternating. A task that
yields at once, again and again, measures it: the longest gap between two of its turns
during one flush is that flush's hold. That task keeps a core busy meanwhile, so the
flush's wall time printed beside it is longer than in a replica.

    python bench/running_flush.py [--runs 2000] [--points 5] [--flushes 100] [--live-flushes 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
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


async def _longest_hold(flush: Any) -> tuple[float, float]:
    """(longest loop hold, wall time) of one ``flush()``, in ms."""
    longest, done = 0.0, False

    async def turns() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0)
            now = time.perf_counter()
            longest, last = max(longest, now - last), now

    probe = asyncio.create_task(turns())
    await asyncio.sleep(0)  # the probe has taken its first turn
    began = time.perf_counter()
    await flush()
    wall = time.perf_counter() - began
    done = True
    await probe
    return longest * 1e3, wall * 1e3


async def live_flush_holds(url: str, scratch: Path, args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """The replica's flush of ``args.runs`` live runs, sliced and whole, alternating."""
    from sqlalchemy import func, select

    from running.app import create_app
    from running.live import FLUSH_SLICE_RUNS
    from running.models import RunChunk
    from running.settings import RunningSettings
    from running.track import GpsPoint
    from tests.support import tokens
    from tests.support.apps import asgi_client

    settings = RunningSettings(
        environment="test", data_dir=scratch, database_urls={"running": url}, running_live_host="127.0.0.1",
        running_live_port=0, running_flush_interval_s=60, running_abandon_after_s=86_400,
    )  # fmt: skip
    app = create_app(settings, keys=tokens.key_cache())
    holds: dict[str, dict[str, list[float]]] = {shape: {"hold": [], "wall": []} for shape in ("sliced", "whole")}
    async with asgi_client(app):
        opened = time.monotonic()
        live_server, runs = app.state.live, app.state.runs
        progress(f"starting {args.runs} live runs in the app")
        held = []
        for _ in range(args.runs):
            live, _ = await runs.start_run(user=uuid.uuid4())
            live_server.active.add(live)
            held.append(live)
        start, done = time.time() - 2 * args.live_flushes * args.points, 0  # a point a second
        for flush in range(args.live_flushes):
            order = ("sliced", "whole") if flush % 2 == 0 else ("whole", "sliced")
            for shape in order:
                # Each run's next points, as its phone sent them since the last flush.
                first = start + done * args.points
                done += 1
                for n, live in enumerate(held):
                    live.pending = [
                        GpsPoint(t=first + k, lat=37.5 + n * 1e-4 + k * 1e-5, lon=127.0 + k * 1e-5, acc=4.0,
                                 alt=31.0, hr=152)
                        for k in range(args.points)
                    ]  # fmt: skip
                    live.heard_t = live.pending[-1].t
                slice_runs = FLUSH_SLICE_RUNS if shape == "sliced" else args.runs
                hold, wall = await _longest_hold(lambda size=slice_runs: live_server.flush(slice_runs=size))
                holds[shape]["hold"].append(hold)
                holds[shape]["wall"].append(wall)
        if time.monotonic() - opened >= settings.running_flush_interval_s - 5:
            fail("the app's own periodic flush may have run among the timed ones: fewer --runs or --live-flushes")
        async with app.state.kernel.db.sessions() as session:
            chunks = await session.scalar(
                select(func.count()).select_from(RunChunk).where(RunChunk.run_id.in_([live.run_id for live in held]))
            )
        if chunks != 2 * args.live_flushes * len(held):
            fail(f"the replica's flushes stored {chunks} chunk rows of {2 * args.live_flushes * len(held)}")
    return holds


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
        with tempfile.TemporaryDirectory(prefix="bench-flush-") as scratch:
            holds = await live_flush_holds(url, Path(scratch), args)
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
    from running.live import FLUSH_SLICE_RUNS

    rows = []
    for shape, label in (("sliced", f"slices of {FLUSH_SLICE_RUNS} runs"), ("whole", "one transaction")):
        holding, taking = summary(holds[shape]["hold"]), summary(holds[shape]["wall"])
        rows.append([label, *spread_cells(holding, ("p50", "p95", "max")), *spread_cells(taking, ("p50", "max"))[1:]])
        figures[f"live_flush_{shape}_loop_hold_ms_p50"] = round(holding["p50"], 2)
        figures[f"live_flush_{shape}_loop_hold_ms_max"] = round(holding["max"], 2)
        figures[f"live_flush_{shape}_wall_ms_p50"] = round(taking["p50"], 2)
        figures[f"live_flush_{shape}_n"] = int(holding["n"])
    table(
        f"\nthe replica's flush of {args.runs} live runs x {args.points} new points: longest event-loop hold (ms)",
        ["flush", "n", "hold p50", "hold p95", "hold max", "wall p50", "wall max"],
        rows,
    )
    paired = [a / b for a, b in zip(holds["sliced"]["hold"], holds["whole"]["hold"], strict=True)]
    figures["live_flush_loop_hold_ratio_sliced_to_whole"] = round(statistics.median(paired), 3)
    figures["flush_slice_runs"] = FLUSH_SLICE_RUNS
    print(f"sliced / whole, longest hold, median of {len(paired)} paired flushes: "
          f"{figures['live_flush_loop_hold_ratio_sliced_to_whole']:.2f}")  # fmt: skip
    emit(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="live runs on the replica")
    parser.add_argument("--points", type=int, default=5, help="new points per run (5 s at a point a second)")
    parser.add_argument("--flushes", type=int, default=100, help="flushes timed per statement shape")
    parser.add_argument("--live-flushes", type=int, default=30, help="replica flushes timed, sliced and whole each")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
