"""Live runs at scale: runners streaming a point a second, friends watching.

Three set-ups, one run, the same load generators (runners in one process, watchers in
another, on loopback; point → watcher latency is the watcher's clock minus the point's
device time, one machine, one clock):

- **bare**: a bare ``websockets`` server that hands each runner frame to the library's
  ``broadcast`` (no parsing, filter, storage or token): the library's floor, for
  ``live_ratio_to_bare_websockets``. Measured before and after the one replica (the
  shared machine's load drifts between set-ups); the ratio is against their mean. The
  floor is a whole server's CPU (receiving each frame, the event loop, keep-alive pings,
  and on loopback the watchers' TCP receive work, charged to the sender); the CPU of the
  ``broadcast`` calls alone is reported beside it
  (``bare_broadcast_call_cpu_us_per_delivery``), as is each set-up's kernel share and
  the replica's CPU with nobody connected (its fixed cost). With ``--picows``, a bare
  floor on ``picows`` (compiled frame parsing, sending and keep-alive, over its default
  transport, aiofastnet) once, after both of them: what a compiled library makes of the
  floor (``live_ratio_to_bare_picows``); it is not measured before and after.
- **one replica**: ``smartgym serve running`` (PostgreSQL, RabbitMQ fan-out on), clients
  straight to its live port.
- **gateway, two replicas** (the production path): clients connect through the gateway,
  which spreads sockets over two running replicas; a watcher on the other replica than
  its runner gets the position across RabbitMQ. A lighter load (the gateway pumps every
  frame in Python and shares the two cores).

Every delivery is timed (no sampling); after the runners stop, the watchers drain until
nothing more arrives. Each watcher's distinct deliveries are compared with the points its
run accepted: a shortfall or a repeat is a failure (non-zero exit, ``failures`` in the
JSON). ``live_cpu_us_per_delivery`` is the running process's CPU over streaming and
drain divided by distinct deliveries. Also here: the GPS filters' position error on
generated tracks (truth + noise + multipath spikes).

    python bench/running_live_fanout.py [--runners 2000] [--watchers 10000] [--seconds 20]
        [--gateway-runners 400] [--no-gateway] [--no-broker] [--picows]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import json
import math
import multiprocessing
import statistics
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, insert

from bench._common import (
    STARTUP_S,
    cell,
    cpu_seconds,
    emit,
    ensure_services,
    fail,
    figure,
    machine,
    processes_named,
    progress,
    shared_broker_namespace,
    spread_line,
    stop_quietly,
    summary,
    table,
)
from bench._live import bare_picows_server_process, bare_server_process, drive
from common.db import sync_url
from common.loops import configured_choice, resolved_name
from common.migrations import upgrade
from common.security import Role
from running.analysis import replay
from running.models import Friendship
from running.synthetic import generate, position_errors
from running.track import GpsPoint
from tests.support import tokens
from tests.support.apps import free_port, serving
from tests.support.infra import PG_ADMIN_URL, RABBITMQ_URL, PostgresDatabases
from tests.support.processes import clean_env, start, wait_healthy

ROOT = Path(__file__).resolve().parents[1]
IDLE_S = 5.0


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


class People:
    """Runners and their friends (accepted friendships in running's database), with tokens."""

    def __init__(self, database: str, runners: int, per_run: int) -> None:
        self.runners = [uuid.uuid4() for _ in range(runners)]
        self.friends = [[uuid.uuid4() for _ in range(per_run)] for _ in self.runners]
        now = datetime.now(UTC)
        rows = []
        for runner, friends in zip(self.runners, self.friends, strict=True):
            for friend in friends:
                rows.append({"user_id": runner, "friend_id": friend, "status": "accepted", "created_at": now})
                rows.append({"user_id": friend, "friend_id": runner, "status": "accepted", "created_at": now})
        engine = create_engine(sync_url(database))
        with engine.begin() as connection:
            for offset in range(0, len(rows), 5000):
                connection.execute(insert(Friendship), rows[offset : offset + 5000])
        engine.dispose()
        issuer = tokens.issuer(ttl=timedelta(hours=1))
        self.token = {user: issuer.issue(str(user), [Role.CUSTOMER], []) for user in self.runners}
        for friends in self.friends:
            for friend in friends:
                self.token[friend] = issuer.issue(str(friend), [Role.CUSTOMER], [])

    def runner_urls(self, base: str) -> list[tuple[str, str]]:
        return [(f"{base}/ws/runs", self.token[user]) for user in self.runners]

    def watcher_plan(self, bases: list[str]) -> Any:
        """Watchers of run i spread round-robin over ``bases``."""

        def plan(run_ids: list[str]) -> list[tuple[str, str, int]]:
            turn = itertools.count()
            return [
                (f"{bases[next(turn) % len(bases)]}/ws/runs/{run_id}/watch", self.token[friend], index)
                for index, (run_id, friends) in enumerate(zip(run_ids, self.friends, strict=True))
                for friend in friends
            ]

        return plan


def running_env(database: str, namespace: str, auth_url: str, scratch: Path, live_port: int, replica: str,
                per_run: int, broker_url: str | None = RABBITMQ_URL,
                stats_interval_s: float | None = None) -> dict[str, str]:  # fmt: skip
    broker = {"SMARTGYM_BROKER_URL": broker_url} if broker_url else {}
    # Unset, the replica keeps its own default (a stats frame a second to each runner).
    stats = {} if stats_interval_s is None else {"SMARTGYM_RUNNING_STATS_INTERVAL_S": str(stats_interval_s)}
    return clean_env(
        **broker,
        **stats,
        SMARTGYM_BUS_NAMESPACE=namespace,
        SMARTGYM_AUTH_URL=auth_url,
        SMARTGYM_DATA_DIR=str(scratch),
        SMARTGYM_LOG_LEVEL="WARNING",
        SMARTGYM_RUNNING_DATABASE_URL=database,
        SMARTGYM_RUNNING_LIVE_PORT=str(live_port),
        SMARTGYM_RUNNING_REPLICA=replica,
        SMARTGYM_RUNNING_WATCHERS_PER_RUN=str(max(500, per_run)),
    )


def start_running(env: dict[str, str], scratch: Path, name: str) -> Any:
    port = free_port()
    log = scratch / f"{name}.log"
    process = start(["serve", "running", "--port", str(port)], env=env, cwd=ROOT, log=log)
    wait_healthy(f"http://127.0.0.1:{port}", process, log, timeout=STARTUP_S)
    return process


def start_gateway(live_urls: list[str], auth_url: str, scratch: Path) -> tuple[Any, int]:
    port = free_port()
    routes = [{"prefix": "/api/live", "service": "running_live", "upstreams": live_urls,
               "public": ["/ws/share/"], "rate_limit": "1000000/second"}]  # fmt: skip
    env = clean_env(
        SMARTGYM_GATEWAY_ROUTES=json.dumps(routes),
        SMARTGYM_AUTH_URL=auth_url,
        SMARTGYM_GATEWAY_IP_RATE_LIMIT="1000000/second",
        SMARTGYM_GATEWAY_WS_PER_ADDRESS="100000",
        SMARTGYM_LOG_LEVEL="WARNING",
        SMARTGYM_DATA_DIR=str(scratch),
    )
    log = scratch / "gateway.log"
    process = start(["serve", "gateway", "--port", str(port)], env=env, cwd=ROOT, log=log)
    wait_healthy(f"http://127.0.0.1:{port}", process, log, timeout=STARTUP_S)
    return process, port


def judge(label: str, result: dict[str, Any]) -> None:
    """Every accepted point reached each of its run's watchers exactly once."""
    watched = result["watched"]
    if watched.distinct < result["expected"]:
        fail(f"{label}: {result['expected'] - watched.distinct} of {result['expected']} deliveries missing "
             f"({result['short_sockets']} watchers short)")  # fmt: skip
    if watched.repeats:
        fail(f"{label}: {watched.repeats} deliveries repeated")


def per_delivery_us(cpu_s: float, result: dict[str, Any]) -> float:
    return cpu_s / max(1, result["watched"].distinct) * 1e6


async def run(args: argparse.Namespace) -> None:
    ensure_services()
    scratch = Path(tempfile.mkdtemp(prefix="bench-running-"))
    databases = PostgresDatabases(PG_ADMIN_URL)
    database = databases.create("bench_running")
    upgrade("running", database)
    per_run = max(1, args.watchers // args.runners)
    results: dict[str, dict[str, Any]] = {}
    processes: list[Any] = []
    context = multiprocessing.get_context("fork")
    broker = processes_named("beam.smp")

    async def floor(label: str, server: Any = bare_server_process) -> None:
        bare_port = free_port()
        ready, ready_end = context.Pipe()
        bare = context.Process(target=server, args=(bare_port, ready_end), daemon=True)
        bare.start()
        ready_end.close()  # the child's end: a child that dies ends the wait below
        if not ready.poll(STARTUP_S) or ready.recv() != "up":
            raise RuntimeError(f"the bare server ({label}) did not come up")
        people = People(database, args.runners, per_run)
        base = f"ws://127.0.0.1:{bare_port}"
        progress(f"bare broadcast ({label})")
        results[label] = await drive(people.runner_urls(base), people.watcher_plan([base]), seconds=args.seconds,
                                     pids={"bare": bare.pid or 0})  # fmt: skip
        ready.send("report")
        results[label]["broadcast"] = ready.recv()
        # Killed, not terminated: forked inside the auth server, it inherits a SIGTERM handler.
        bare.kill()
        bare.join(10)

    try:
        # 1. The library's floor, before and after the replica: the machine is shared, and
        # its load drifts between the two set-ups; the ratio is taken against their mean.
        await floor("bare")

        async with serving(tokens.jwks_app()) as auth_url:
            # 2. One running replica, clients straight to its live port.
            live_port = free_port()
            namespace = shared_broker_namespace()
            # Waited for off the loop: the loop serves the keys the replica fetches as it starts.
            env = running_env(database, namespace, auth_url, scratch, live_port, "r1", per_run,
                              broker_url=None if args.no_broker else RABBITMQ_URL,
                              stats_interval_s=args.runner_stats_s)  # fmt: skip
            one = await asyncio.to_thread(start_running, env, scratch, "running-1")
            processes.append(one)
            # What the replica costs with nobody connected (its periodic jobs: flush, janitor,
            # outbox polls, GC pacing), to tell a fixed cost from a per-delivery one.
            idle_before = cpu_seconds(one.pid)
            await asyncio.sleep(IDLE_S)
            idle_share = (cpu_seconds(one.pid) - idle_before) / IDLE_S
            people = People(database, args.runners, per_run)
            base = f"ws://127.0.0.1:{live_port}"
            progress("one running replica")
            results["one"] = await drive(people.runner_urls(base), people.watcher_plan([base]),
                                         seconds=args.seconds, pids={"running": one.pid})  # fmt: skip
            results["one"]["idle_share"] = idle_share
            stop_quietly(one)
            processes.remove(one)
            await floor("bare_after")
            if args.picows:
                await floor("picows", bare_picows_server_process)

            # 3. The production path: gateway in front of two replicas.
            if not args.no_gateway and not args.no_broker:  # two replicas need the broker
                namespace = shared_broker_namespace()
                ports = [free_port(), free_port()]
                replicas = []
                for n, port in enumerate(ports):
                    env = running_env(database, namespace, auth_url, scratch, port, f"r{n + 1}", per_run,
                                      stats_interval_s=args.runner_stats_s)  # fmt: skip
                    replicas.append(await asyncio.to_thread(start_running, env, scratch, f"running-gw-{n + 1}"))
                    processes.append(replicas[-1])
                gateway, gateway_port = await asyncio.to_thread(
                    start_gateway, [f"http://127.0.0.1:{port}" for port in ports], auth_url, scratch)  # fmt: skip
                processes.append(gateway)
                runners = args.gateway_runners
                people = People(database, runners, per_run)
                base = f"ws://127.0.0.1:{gateway_port}/api/live"
                pids = {"gateway": gateway.pid, "running r1": replicas[0].pid, "running r2": replicas[1].pid}
                if len(broker) == 1:
                    pids["broker (shared)"] = broker[0]
                progress("gateway + two running replicas")
                results["gateway"] = await drive(people.runner_urls(base), people.watcher_plan([base]),
                                                 seconds=args.seconds, pids=pids)  # fmt: skip
    finally:
        for process in processes:
            stop_quietly(process)
        databases.drop_all()

    for label, result in results.items():
        judge(label, result)
    report(args, per_run, results)


def report(args: argparse.Namespace, per_run: int, results: dict[str, dict[str, Any]]) -> None:
    errors = filter_errors()
    distance = distance_errors()
    bare, one = results["bare"], results["one"]
    floors = [per_delivery_us(results[label]["cpu_s"]["bare"], results[label]) for label in ("bare", "bare_after")]
    bare_us = statistics.fmean(floors)
    # The library's broadcast alone (its calls' CPU in the bare server, sends included),
    # without receiving the frames, the event loop and the keep-alive pings around it.
    calls = [results[label]["broadcast"] for label in ("bare", "bare_after")]
    broadcast_us = 1e6 * sum(c["broadcast_s"] for c in calls) / max(1, sum(c["deliveries"] for c in calls))
    live_us = per_delivery_us(one["cpu_s"]["running"], one)
    # The kernel's share (sends, and on loopback the receiving side's TCP work too) and
    # Python's, for the replica and the bare server.
    live_system_us = per_delivery_us(one["system_cpu_s"]["running"], one)
    bare_system_us = statistics.fmean(
        per_delivery_us(results[label]["system_cpu_s"]["bare"], results[label]) for label in ("bare", "bare_after")
    )
    print(f"\nrunning live fan-out - {machine()}")
    if args.runner_stats_s is not None:
        print(f"(the replicas answer each runner with stats every {args.runner_stats_s:g} s, not the default)")
    rows = []
    for label, name in (("bare", "bare websockets broadcast"), ("one", "running, one replica"),
                        ("bare_after", "bare websockets, again"), ("picows", "bare picows broadcast"),
                        ("gateway", "gateway + 2 running replicas")):  # fmt: skip
        if label not in results:
            continue
        result = results[label]
        watched = result["watched"]
        lat = summary(watched.latencies_ms)
        deliveries_per_s = watched.distinct / result["wall_s"]
        cpu = "; ".join(f"{name} {value / result['wall_s']:.0%}" for name, value in result["cpu_s"].items())
        server_cpu = sum(value for key, value in result["cpu_s"].items() if not key.startswith("broker"))
        rows.append([
            name, f"{result['runners']} x {per_run}", f"{watched.distinct}/{result['expected']}", watched.repeats,
            f"{deliveries_per_s:.0f}", spread_line(lat), f"{watched.drain_s:.1f}",
            f"{per_delivery_us(server_cpu, result):.1f}", cpu,
        ])  # fmt: skip
    table(
        f"{args.seconds:.0f} s of 1 point/s per runner; every delivery timed (point -> watcher, ms); "
        "drained after the runners stop",
        ["set-up", "runners x watchers", "delivered/expected", "repeats", "deliveries/s",
         "p50 / p95 / p99 ms (n)", "drain s", "server CPU µs/delivery", "CPU share (of one core)"],
        rows,
    )  # fmt: skip
    ingest = summary(one["watched"].to_server_ms)
    print(f"one replica: runner -> server published p50 / p99 = {cell(ingest, 'p50')} / {cell(ingest, 'p99')} ms "
          f"(n={ingest['n']}); CPU per delivery {live_us:.1f} µs against {bare_us:.1f} µs for the bare broadcast "
          f"(mean of {floors[0]:.1f} before and {floors[1]:.1f} after; ratio {live_us / bare_us:.2f}); "
          f"of the bare server's, {broadcast_us:.1f} µs in the library's broadcast calls (sends included), the rest "
          "receiving the runners' frames, the event loop and pings")  # fmt: skip
    idle_us = per_delivery_us(one["idle_share"] * one["wall_s"], one)
    print(
        f"the replica with nobody connected: {one['idle_share']:.1%} of a core ({idle_us:.1f} µs a delivery "
        "at this rate)"
    )
    print(f"kernel (system) CPU per delivery: running {live_system_us:.1f} µs, bare {bare_system_us:.1f} µs; "
          f"user CPU: running {live_us - live_system_us:.1f} µs, bare {bare_us - bare_system_us:.1f} µs")  # fmt: skip
    picows_figures: dict[str, Any] = {}
    if "picows" in results:
        picows = results["picows"]
        picows_us = per_delivery_us(picows["cpu_s"]["bare"], picows)
        picows_system_us = per_delivery_us(picows["system_cpu_s"]["bare"], picows)
        picows_calls_us = 1e6 * picows["broadcast"]["broadcast_s"] / max(1, picows["broadcast"]["deliveries"])
        print(f"bare picows: {picows_us:.1f} µs a delivery ({picows_system_us:.1f} in the kernel, "
              f"{picows_calls_us:.1f} in its send calls); the replica {live_us / picows_us:.2f} x it, "
              f"the websockets floor {bare_us / picows_us:.2f} x it")  # fmt: skip
        picows_figures = {
            "bare_picows_cpu_us_per_delivery": round(picows_us, 1),
            "bare_picows_system_cpu_us_per_delivery": round(picows_system_us, 1),
            "bare_picows_send_call_cpu_us_per_delivery": round(picows_calls_us, 1),
            "bare_picows_point_to_watcher_p99_ms": figure(summary(picows["watched"].latencies_ms)["p99"], 1),
            "live_ratio_to_bare_picows": round(live_us / picows_us, 2),
            "bare_websockets_ratio_to_bare_picows": round(bare_us / picows_us, 2),
        }
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
    lat = summary(one["watched"].latencies_ms)
    figures: dict[str, Any] = {
        "runners": args.runners,
        "one_replica_broker": not args.no_broker,
        "watchers": one["watchers"],
        "seconds": args.seconds,
        # None: the service's default (one a second), what a runner's phone gets.
        "runner_stats_interval_s": args.runner_stats_s,
        "ingest_points_per_s": round(one["points_sent"] / one["stream_s"], 1),
        "deliveries_per_s": round(one["watched"].distinct / one["wall_s"], 1),
        "delivered_ratio": round(one["watched"].distinct / max(1, one["expected"]), 4),
        "deliveries_n": int(lat["n"]),
        "point_to_watcher_p50_ms": figure(lat["p50"], 1),
        "point_to_watcher_p95_ms": figure(lat["p95"], 1),
        "point_to_watcher_p99_ms": figure(lat["p99"], 1),
        "running_cpu_share": round(one["cpu_s"]["running"] / one["wall_s"], 3),
        "live_cpu_us_per_delivery": round(live_us, 1),
        "bare_websockets_cpu_us_per_delivery": round(bare_us, 1),
        "bare_websockets_cpu_us_per_delivery_before_after": [round(value, 1) for value in floors],
        "live_ratio_to_bare_websockets": round(live_us / bare_us, 2),
        "bare_broadcast_call_cpu_us_per_delivery": round(broadcast_us, 1),
        "live_system_cpu_us_per_delivery": round(live_system_us, 1),
        "live_idle_cpu_us_per_delivery": round(idle_us, 1),
        "bare_system_cpu_us_per_delivery": round(bare_system_us, 1),
        "bare_point_to_watcher_p99_ms": figure(summary(bare["watched"].latencies_ms)["p99"], 1),
        "kalman_error_m": round(errors["kalman_mean"], 2),
        "outlier_only_error_m": round(errors["outlier_only_mean"], 2),
        "raw_error_m": round(errors["raw_mean"], 2),
        "distance_error_pct": round(distance["track_pct"], 2),
        "raw_sum_distance_error_pct": round(distance["raw_sum_pct"], 1),
        "event_loop": resolved_name(configured_choice()),
        "machine": machine(),
    }
    figures.update(picows_figures)
    if "gateway" in results:
        gw = results["gateway"]
        glat = summary(gw["watched"].latencies_ms)
        servers = sum(value for key, value in gw["cpu_s"].items() if not key.startswith("broker"))
        figures.update(
            {
                "gateway_runners": gw["runners"],
                "gateway_watchers": gw["watchers"],
                "gateway_delivered_ratio": round(gw["watched"].distinct / max(1, gw["expected"]), 4),
                "gateway_deliveries_n": int(glat["n"]),
                "gateway_point_to_watcher_p50_ms": figure(glat["p50"], 1),
                "gateway_point_to_watcher_p99_ms": figure(glat["p99"], 1),
                "gateway_path_cpu_us_per_delivery": round(per_delivery_us(servers, gw), 1),
                "gateway_cpu_us_per_delivery": round(per_delivery_us(gw["cpu_s"]["gateway"], gw), 1),
            }
        )
    emit(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runners", type=int, default=2000)
    parser.add_argument("--watchers", type=int, default=10000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--gateway-runners", type=int, default=400, help="runners of the gateway set-up")
    parser.add_argument("--no-gateway", action="store_true", help="skip the gateway + two replicas set-up")
    parser.add_argument("--no-broker", action="store_true",
                        help="the one replica without RabbitMQ (it never crosses it); no gateway")  # fmt: skip
    parser.add_argument("--picows", action="store_true",
                        help="also the bare floor on picows (compiled WebSocket frames) after websockets'")  # fmt: skip
    parser.add_argument("--runner-stats-s", type=float, default=None,
                        help="seconds between the stats frames a replica answers each runner with, 0-60 "
                             "(default: the service's own); 60 shows the fan-out nearly without them")  # fmt: skip
    args = parser.parse_args()
    if args.runner_stats_s is not None and not 0 <= args.runner_stats_s <= 60:
        parser.error("--runner-stats-s is 0-60 seconds, as SMARTGYM_RUNNING_STATS_INTERVAL_S")
    if args.picows and importlib.util.find_spec("picows") is None:
        parser.error("--picows needs the development dependencies (scripts/install dev)")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
