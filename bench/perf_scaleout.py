"""Scale-out costs little: the same moderate load on 1, 2 and 3 replicas, and the CPU
seconds per delivered message summed over every process of the system.

This machine has 2 cores, so more replicas cannot show more throughput; what they can
show is what spreading costs. Every replica, the upstream and the broker are separate
processes; the load generators run in processes of their own and are not counted.

- **Live runs**: runners on replica 1, their watchers spread over the other replicas, so
  with 2 and 3 replicas every position crosses RabbitMQ (with 1, all is local). The
  moderate load is 500 runners with 5 watchers each (2,000-2,500 deliveries/s, about a
  ninth of one core on one replica); at ``--runners 100`` the idle share of each extra
  process (~0.5 % of a core) is a large part of what it is compared with. The
  broker is a private RabbitMQ node started for this run (the shared node carries other
  clients' traffic), and its Erlang VM's CPU (beam.smp, from /proc) is counted. So are
  the PostgreSQL backends connected to the run's own database (running writes points in
  batches), read from pg_stat_activity at the start and end of each window; the
  server's shared processes (WAL writer, checkpointer) also serve other clients of the
  machine and are not.
- **Gateway**: k gateway processes in front of one upstream, the same total request rate
  split over k load generators (one per gateway), a token pool with 10 % first-seen tokens
  (each replica has its own verification cache: scale-out pays more misses). Rate limits
  are per process (memory://), or with ``--limits redis`` shared by the replicas through
  a private Redis server started for the run, whose CPU is counted (what replicas in
  production share; ADR 0057), with one more set-up beside them: one gateway keeping its
  limits in memory, what sharing them costs in the same run. Every set-up runs once a round for ``--gateway-rounds``
  rounds, the order rotated each round (other jobs on the machine come and go: a drift
  must not land on the last set-up only); each window is printed, and a set-up's cost is
  its median window's. The regular tokens are new in every window, so every window starts
  from the same verification caches. A reference set-up, one replica at the per-replica
  rate of the most replicas, shows what a less loaded process costs per request (the
  whole machine is then quieter too, so it is no exact split). CPU is read from the
  threads' nanosecond counters (checked against /proc's 10 ms ticks).

Every message must be delivered exactly once (watchers: distinct positions against the
points each run accepted, no repeats, no point refused; gateway: every request answered
200 and counted once by the upstream; failures are counted in the table), or the run
fails. The aim (3 replicas within 1.25x of one, for the cost per message and the p99) is
printed as a verdict line per path; p99s are from every message of the set-up (n
printed). Projected capacity per core = delivered messages per CPU-second at that
replica count. Each process's idle CPU share is measured before the runs, and the cost
is also printed without it (what carrying the messages costs, apart from what an extra
process costs by existing). So is the machine's own floor for the latencies: a loopback
TCP round trip between two processes, paced at the gateway's per-process rates (what the
machine itself adds to an exchange at each rate, whatever runs).

Each path takes about two minutes (`--skip-gateway` or `--skip-live` runs one; both, about
four): every process is started once, at the same time as the broker node boots: three
running replicas and three gateways; the set-up with k replicas uses the first k (the
others idle, their CPU not counted: a few timers). The running replicas and the broker
node are stopped before the gateway path runs, so they do not share the cores with it.
The live path is bench/_scaleout_live.py, the gateway's bench/_scaleout_gateway.py, and
what both measure with (CPU counters, the round trip, the verdict) bench/_scaleout.py.

    python bench/perf_scaleout.py [--replicas 1,2,3] [--runners 500] [--per-run 5] [--seconds 6] [--live-rounds 2]
        [--rate 200] [--gateway-seconds 8] [--gateway-rounds 3] [--no-reference] [--limits memory|redis]
        [--fanout-window 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from bench._broker import PrivateBroker
from bench._common import (
    emit,
    ensure_services,
    machine,
    progress,
    stop_quietly,
)
from bench._scaleout_gateway import GatewaySide, gateway_report, gateway_runs
from bench._scaleout_live import idle_shares, live_runs, report_live, start_replicas, wait_replicas
from common.loops import configured_choice, resolved_name
from common.migrations import upgrade
from tests.support.apps import serving
from tests.support.infra import PG_ADMIN_URL, PostgresDatabases
from tests.support.tokens import jwks_app


async def run(args: argparse.Namespace) -> None:
    ensure_services()
    scratch = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    databases = PostgresDatabases(PG_ADMIN_URL)
    count = max(args.replicas)
    broker = PrivateBroker()
    side = GatewaySide(count, scratch, limits=args.limits)
    replicas: list[tuple[Any, int]] = []
    live: list[dict[int, dict[str, Any]]] = []
    gateway: dict[str, Any] = {}
    booting: asyncio.Task[PrivateBroker] | None = None
    try:
        async with serving(jwks_app()) as auth_url:
            # Everything starts at once (the broker node's boot is the longest part).
            progress("starting a private RabbitMQ node, the gateways and their upstream")
            booting = asyncio.create_task(asyncio.to_thread(broker.start)) if not args.skip_live else None
            if not args.skip_gateway:
                side.start(auth_url)
            database = databases.create("bench_scaleout")
            upgrade("running", database)
            if booting is not None:
                await booting
                replicas = start_replicas(count, database=database, broker_url=broker.url, auth_url=auth_url,
                                          scratch=scratch, per_run=args.per_run,
                                          fanout_window_s=args.fanout_window)  # fmt: skip
            if not args.skip_gateway:
                await side.wait()
            if replicas:
                await asyncio.to_thread(wait_replicas, replicas, scratch)
                await asyncio.sleep(1.0)  # every replica has heard the others' hello
                idle = await idle_shares(replicas, broker)
                live = await live_runs(args, database, replicas, broker)
                for results in live:
                    for result in results.values():
                        result["idle_share"] = idle
                # The live side is stopped before the gateway's windows: idle replicas and
                # a broker node (its schedulers busy-wait) would share the cores with them.
                for process, _ in replicas:
                    stop_quietly(process)
                replicas = []
            if booting is not None:
                await asyncio.to_thread(broker.stop)
                booting = None
            if not args.skip_gateway:
                gateway = await gateway_runs(args, side)
    finally:
        for process, _ in replicas:
            stop_quietly(process)
        side.stop()
        if booting is not None:
            await asyncio.to_thread(broker.stop)
        databases.drop_all()
    report(args, live, gateway)


def report(args: argparse.Namespace, live: list[dict[int, dict[str, Any]]], gateway: dict[str, Any]) -> None:
    figures: dict[str, Any] = {
        "machine": machine(),
        "replicas": args.replicas,
        "event_loop": resolved_name(configured_choice()),
    }
    print(f"\nscale-out cost - {machine()}")
    if live:
        report_live(args, live, figures)
    if gateway:
        gateway_report(args, gateway, figures)
    emit(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=lambda text: [int(part) for part in text.split(",")], default=[1, 2, 3])
    parser.add_argument("--runners", type=int, default=500,
                        help="live runs streaming at once (1 position/s each); 100 is a light load")  # fmt: skip
    parser.add_argument("--per-run", type=int, default=5, help="watchers per run")
    parser.add_argument("--seconds", type=float, default=6.0, help="streaming time per live set-up")
    parser.add_argument("--live-rounds", type=int, default=2,
                        help="times every live set-up runs, in alternating order")  # fmt: skip
    parser.add_argument("--rate", type=float, default=200.0, help="gateway requests/s in total")
    parser.add_argument("--gateway-seconds", type=float, default=8.0)
    parser.add_argument("--new-token-share", type=float, default=0.1)
    parser.add_argument(
        "--gateway-rounds", type=int, default=3, help="gateway: every set-up once a round, order rotated"
    )
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="gateway: skip the one replica at the per-replica rate")  # fmt: skip
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="gateway: idle share window")
    parser.add_argument("--limits", choices=("memory", "redis"), default="memory",
                        help="gateway: rate limits per process, or shared by the replicas through Redis")  # fmt: skip
    parser.add_argument("--fanout-window", type=float, default=None,
                        help="replicas' batch window across RabbitMQ, s (default: the setting's)")  # fmt: skip
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--skip-gateway", action="store_true")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
