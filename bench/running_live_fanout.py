"""Live runs at scale: runners streaming a point a second, friends watching, on one replica.

Runs ``smartgym serve running`` (PostgreSQL, RabbitMQ fan-out on) and two load-generator
processes on loopback: one holds the runners (one WebSocket each, a point a second,
stamped with the wall clock as its device time, reading back its live stats), the other
the watchers (several friends per run). Point → watcher latency is the watcher's clock
minus the point's device time (one machine, one clock). Also here: the running
process's CPU share, and the GPS filters' position error on generated tracks (truth +
noise + multipath spikes).

    python bench/running_live_fanout.py [--runners 2000] [--watchers 10000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import math
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, insert

from bench._common import cpu_seconds, emit, ensure_services, jwks_app, machine, progress, summary, table
from common.db import sync_url
from common.migrations import upgrade
from common.security import Role
from running.analysis import replay
from running.models import Friendship
from running.synthetic import generate, position_errors
from running.track import GpsPoint
from tests.support import tokens
from tests.support.apps import free_port, serving
from tests.support.infra import PG_ADMIN_URL, RABBITMQ_URL, PostgresDatabases
from tests.support.processes import clean_env, start, stop, wait_healthy

ROOT = Path(__file__).resolve().parents[1]
CONNECT_CONCURRENCY = 64


# -- load generators (each in its own process) --------------------------------------------


async def _keep_gc_short() -> None:
    """The load generator must not be what is measured: freeze its long-lived sockets out
    of the garbage collector's scans, as the running service does."""
    while True:
        gc.freeze()
        await asyncio.sleep(2)


async def _connect_all(urls: list[tuple[str, str]]) -> list[Any]:
    from websockets.asyncio.client import connect

    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(url: str, token: str) -> Any:
        async with gate:
            for _ in range(5):
                try:
                    return await connect(
                        url, additional_headers={"authorization": f"Bearer {token}"}, open_timeout=30,
                        ping_interval=None, max_queue=None,
                    )  # fmt: skip
                except OSError:
                    await asyncio.sleep(0.5)
            raise RuntimeError(f"could not connect to {url}")

    return list(await asyncio.gather(*(one(url, token) for url, token in urls)))


def runners_process(base: str, people: list[tuple[str, str]], seconds: float, pipe: Any) -> None:
    async def main() -> None:
        freezer = asyncio.create_task(_keep_gc_short())
        sockets = await _connect_all([(f"{base}/ws/runs", token) for _, token in people])
        run_ids = [json.loads(await socket.recv())["run_id"] for socket in sockets]
        pipe.send(run_ids)
        pipe.recv()  # watchers are in: go
        sent = 0

        async def drain(socket: Any) -> None:
            async for _ in socket:
                pass

        readers = [asyncio.create_task(drain(socket)) for socket in sockets]

        async def run(index: int, socket: Any) -> None:
            nonlocal sent
            rng = random.Random(index)
            lat, lon = 37.5444 + rng.uniform(-0.01, 0.01), 127.0374 + rng.uniform(-0.01, 0.01)
            heading = rng.uniform(0, 2 * math.pi)
            await asyncio.sleep(rng.uniform(0, 1))  # phones are not synchronised
            deadline = time.monotonic() + seconds
            next_at = time.monotonic()
            while time.monotonic() < deadline:
                lat += 3.0 * math.sin(heading) / 111_000
                lon += 3.0 * math.cos(heading) / 88_000
                point = {"type": "point", "t": time.time(), "lat": lat, "lon": lon, "acc": 6.0, "hr": 140}
                await socket.send(json.dumps(point))
                sent += 1
                next_at += 1.0
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        started = time.monotonic()
        await asyncio.gather(*(run(index, socket) for index, socket in enumerate(sockets)))
        elapsed = time.monotonic() - started
        for reader in readers:
            reader.cancel()
        freezer.cancel()
        pipe.send({"sent": sent, "elapsed": elapsed})
        await asyncio.gather(*(socket.close() for socket in sockets), return_exceptions=True)

    asyncio.run(main())


def watchers_process(base: str, plan: list[tuple[str, str]], seconds: float, pipe: Any) -> None:
    async def main() -> None:
        freezer = asyncio.create_task(_keep_gc_short())
        sockets = await _connect_all([(f"{base}/ws/runs/{run_id}/watch", token) for run_id, token in plan])
        for socket in sockets:
            json.loads(await socket.recv())  # "watching"
        pipe.send("ready")
        latencies: list[float] = []
        to_server: list[float] = []  # runner -> running (includes the runner process)
        received = 0
        measuring = True

        async def watch(socket: Any) -> None:
            nonlocal received
            async for frame in socket:
                if not measuring:
                    continue
                message = json.loads(frame)
                if message.get("type") == "position":
                    received += 1
                    if received % 7 == 0 or len(latencies) < 20_000:
                        latencies.append(time.time() - message["t"])
                        to_server.append(message["at"] - message["t"])

        tasks = [asyncio.create_task(watch(socket)) for socket in sockets]
        started = time.monotonic()
        await asyncio.sleep(seconds + 1.5)
        measuring = False
        elapsed = time.monotonic() - started
        for task in tasks:
            task.cancel()
        freezer.cancel()
        pipe.send({"received": received, "elapsed": elapsed, "latencies": latencies, "to_server": to_server})
        await asyncio.gather(*(socket.close() for socket in sockets), return_exceptions=True)

    asyncio.run(main())


# -- the filters on generated tracks ------------------------------------------------------


def filter_errors(tracks: int = 8) -> dict[str, float]:
    figures = {}
    for name, values in position_errors(range(tracks)).items():
        figures[f"{name}_mean"] = statistics.fmean(values)
        figures[f"{name}_p95"] = sorted(values)[int(0.95 * len(values))]
    return figures


def distance_errors(tracks: int = 8) -> dict[str, float]:
    """Total distance against the true course: our track (Kalman speed integrated) and the
    naive sum of raw point-to-point segments."""
    ours, naive = [], []
    for seed in range(tracks):
        track = generate(seed, seconds=1800)
        points = [GpsPoint(t=s.t, lat=s.lat, lon=s.lon, acc=s.accuracy) for s in track.samples]
        ours.append(replay(points).distance_m / track.true_distance_m - 1)
        xy = [track.plane.to_xy(s.lat, s.lon) for s in track.samples]
        naive.append(sum(math.dist(a, b) for a, b in itertools.pairwise(xy)) / track.true_distance_m - 1)
    return {"track_pct": 100 * statistics.fmean(map(abs, ours)), "raw_sum_pct": 100 * statistics.fmean(naive)}


# -- the run -----------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    ensure_services()
    scratch = Path(tempfile.mkdtemp(prefix="bench-running-"))
    databases = PostgresDatabases(PG_ADMIN_URL)
    database = databases.create("bench_running")
    upgrade("running", database)
    runners = [uuid.uuid4() for _ in range(args.runners)]
    per_run = max(1, args.watchers // args.runners)
    watchers = [[uuid.uuid4() for _ in range(per_run)] for _ in runners]
    engine = create_engine(sync_url(database))
    now = datetime.now(UTC)
    rows = []
    for runner, friends in zip(runners, watchers, strict=True):
        for friend in friends:
            rows.append({"user_id": runner, "friend_id": friend, "status": "accepted", "created_at": now})
            rows.append({"user_id": friend, "friend_id": runner, "status": "accepted", "created_at": now})
    with engine.begin() as connection:
        for offset in range(0, len(rows), 5000):
            connection.execute(insert(Friendship), rows[offset : offset + 5000])
    engine.dispose()
    issuer = tokens.issuer(ttl=timedelta(hours=1))
    token_of = {user: issuer.issue(str(user), [Role.CUSTOMER], []) for user in runners}
    for friends in watchers:
        for friend in friends:
            token_of[friend] = issuer.issue(str(friend), [Role.CUSTOMER], [])
    port, live_port = free_port(), free_port()
    process = None
    try:
        async with serving(jwks_app()) as auth_url:
            env = clean_env(
                SMARTGYM_BROKER_URL=RABBITMQ_URL,
                SMARTGYM_BUS_NAMESPACE=f"bench{uuid.uuid4().hex[:8]}",
                SMARTGYM_AUTH_URL=auth_url,
                SMARTGYM_DATA_DIR=str(scratch),
                SMARTGYM_LOG_LEVEL="WARNING",
                SMARTGYM_RUNNING_DATABASE_URL=database,
                SMARTGYM_RUNNING_LIVE_PORT=str(live_port),
                SMARTGYM_RUNNING_WATCHERS_PER_RUN=str(max(500, per_run)),
            )
            log = scratch / "running.log"
            process = start(["serve", "running", "--port", str(port)], env=env, cwd=ROOT, log=log)
            wait_healthy(f"http://127.0.0.1:{port}", process, log)
            base = f"ws://127.0.0.1:{live_port}"
            context = multiprocessing.get_context("fork")
            runner_pipe, runner_end = context.Pipe()
            watcher_pipe, watcher_end = context.Pipe()
            people = [(str(user), token_of[user]) for user in runners]
            runner_worker = context.Process(target=runners_process, args=(base, people, args.seconds, runner_end))
            runner_worker.start()
            progress(f"connecting {args.runners} runners")
            run_ids = await asyncio.to_thread(runner_pipe.recv)
            plan = [(run_id, token_of[friend]) for run_id, friends in zip(run_ids, watchers, strict=True)
                    for friend in friends]  # fmt: skip
            watcher_worker = context.Process(target=watchers_process, args=(base, plan, args.seconds, watcher_end))
            progress(f"connecting {len(plan)} watchers")
            watcher_worker.start()
            await asyncio.to_thread(watcher_pipe.recv)
            progress(f"streaming for {args.seconds:.0f} s")
            cpu_before, wall_before = cpu_seconds(process.pid), time.monotonic()
            runner_pipe.send("go")
            sent = await asyncio.to_thread(runner_pipe.recv)
            watched = await asyncio.to_thread(watcher_pipe.recv)
            cpu_share = (cpu_seconds(process.pid) - cpu_before) / (time.monotonic() - wall_before)
            runner_worker.join(30)
            watcher_worker.join(30)
    finally:
        if process is not None:
            stop(process)
        databases.drop_all()

    errors = filter_errors()
    distance = distance_errors()
    ingest = sent["sent"] / sent["elapsed"]
    deliveries = watched["received"] / watched["elapsed"]
    expected = sent["sent"] * per_run
    latency_ms = [value * 1000 for value in watched["latencies"]]
    lat = summary(latency_ms)
    ingest_delay = summary([value * 1000 for value in watched["to_server"]])
    print(f"\nrunning live fan-out - {machine()}")
    table(
        f"{args.runners} runners x 1 point/s, {len(plan)} watchers ({per_run} per run), "
        f"one replica, {args.seconds:.0f} s",
        ["figure", "value"],
        [
            ["points ingested per second", f"{ingest:.0f}"],
            ["deliveries to watchers per second", f"{deliveries:.0f}"],
            ["delivered / expected", f"{watched['received']}/{expected}"],
            ["point -> watcher p50 / p95 / p99 (ms)", f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f}"],
            [
                "  of which runner -> server published p50 / p99 (ms)",
                f"{ingest_delay['p50']:.1f} / {ingest_delay['p99']:.1f}",
            ],
            ["running process CPU (of one core)", f"{cpu_share:.0%}"],
        ],
    )
    table(
        "GPS position error on generated tracks (8 x 30 min, m)",
        ["filter", "mean", "p95"],
        [
            [name, f"{errors[name + '_mean']:.1f}", f"{errors[name + '_p95']:.1f}"]
            for name in ("raw", "outlier_only", "kalman")
        ],
    )
    table(
        "total distance against the true course (8 x 30 min)",
        ["method", "mean error"],
        [
            ["our track (Kalman speed, while moving)", f"{distance['track_pct']:.2f} %"],
            ["sum of raw segments", f"+{distance['raw_sum_pct']:.0f} %"],
        ],
    )
    emit(
        {
            "runners": args.runners,
            "watchers": len(plan),
            "seconds": args.seconds,
            "ingest_points_per_s": round(ingest, 1),
            "deliveries_per_s": round(deliveries, 1),
            "delivered_ratio": round(watched["received"] / expected, 4) if expected else None,
            "point_to_watcher_p50_ms": round(lat["p50"], 1),
            "point_to_watcher_p95_ms": round(lat["p95"], 1),
            "point_to_watcher_p99_ms": round(lat["p99"], 1),
            "running_cpu_share": round(cpu_share, 3),
            "kalman_error_m": round(errors["kalman_mean"], 2),
            "outlier_only_error_m": round(errors["outlier_only_mean"], 2),
            "raw_error_m": round(errors["raw_mean"], 2),
            "distance_error_pct": round(distance["track_pct"], 2),
            "raw_sum_distance_error_pct": round(distance["raw_sum_pct"], 1),
            "machine": machine(),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runners", type=int, default=2000)
    parser.add_argument("--watchers", type=int, default=10000)
    parser.add_argument("--seconds", type=float, default=30.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
