"""Monitoring at scale: devices per process, and devices sharded over three replicas.

Two phases, each with its own processes:

``single``: one monitoring process at the production defaults (10 s ping period, 1 s
timeout) — run by ``bench/monitoring_fault_latency.py`` (monitoring and notification as
processes, device simulators in processes of their own keeping real heartbeat TCP
connections, the FCM stand-in timing every push), whose JSON line is read back: CPU share
of one core while pinging (CPU-seconds over wall seconds), false alarms, fault → push for
hangs and crashes.

``shards``: three monitoring replicas (``SMARTGYM_MONITORING_SHARDS``, leases in
monitoring's database) and devices over 150 branches, each simulator registering
through a different replica and keeping its heartbeats on it (reconnecting to the next
one when it goes). Every simulated device records which replica pinged it (the
User-Agent names the replica), so "watched twice" and "unwatched" are read at the
devices, not from monitoring's own account. After a steady window one replica is killed
(``kill -9``): the time until its leases are all held by the others, the gap each of its
devices saw between its last ping and the first from a survivor (and from the kill to that
first ping), devices pinged by two
replicas in one window, devices nobody pinged, and false alarms before and after the
kill (any fault: no device fails in this phase).

By default both phases run at reduced sizes (5,000 devices; 4,500 over three replicas;
about four minutes here); ``--full`` runs the aim's sizes (20,000 in one process, 15,000
over three), ``--long`` those with 200 failures per mode and longer windows.

    python bench/monitoring_scale.py [--phases single,shards] [--full | --long]
        [--devices N] [--shard-devices N] [--period 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench._common import (
    cpu_seconds,
    emit,
    ensure_services,
    fail,
    failures,
    figure,
    machine,
    progress,
    spread_cells,
    summary,
    table,
)
from common.migrations import upgrade
from common.security import Role
from tests.support import tokens
from tests.support.apps import free_port, serving
from tests.support.infra import PG_ADMIN_URL, PostgresDatabases
from tests.support.monitoring_shards import Replicas, lease_rows, pinged_by, start_replicas, wait_for_takeover
from tests.support.processes import clean_env, start, stop

ROOT = Path(__file__).resolve().parents[1]
REPLICAS = 3
SHARDS = 64
BRANCHES_PER_SIMULATOR = 50
OK_GAUGE = 'monitoring_devices{health="ok"}'


def single(args: argparse.Namespace) -> dict[str, Any]:
    """The one-process figures, from the fault latency benchmark run as it is."""
    command = [
        sys.executable,
        str(ROOT / "bench" / "monitoring_fault_latency.py"),
        "--devices", str(args.devices),
        "--failures", str(args.failures),
        "--reboots", str(args.reboots),
        "--steady-s", str(args.steady_s),
        "--heartbeat-devices", str(args.heartbeat_devices),
    ]  # fmt: skip
    progress(f"single: {' '.join(command[1:])}")
    # Its progress goes straight to stderr; its tables and JSON line are read back.
    result = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    sys.stdout.write(result.stdout)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        fail(f"single-process run failed ({result.returncode}) before its figures")
        return {}
    figures: dict[str, Any] = json.loads(lines[-1])
    for failure in figures.get("failures", []):
        fail(f"single: {failure}")
    return figures


async def metric(client: httpx.AsyncClient, url: str, prefix: str) -> float:
    text = (await client.get(f"{url}/metrics")).text
    line = next((row for row in text.splitlines() if row.startswith(prefix)), "")
    return float(line.rsplit(" ", 1)[-1]) if line else 0.0


async def shards(args: argparse.Namespace) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="bench-monitoring-scale-"))
    databases = PostgresDatabases(PG_ADMIN_URL)
    database = databases.create("bench_monshard")
    upgrade("monitoring", database)
    period = args.period
    per_simulator = math.ceil(args.shard_devices / REPLICAS)
    total = per_simulator * REPLICAS
    operator = tokens.issuer().issue(str(uuid.uuid4()), [Role.OPERATOR], [])
    auth = {"authorization": f"Bearer {operator}"}
    replicas: Replicas | None = None
    simulators: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    figures: dict[str, Any] = {}
    try:
        async with serving(tokens.jwks_app()) as auth_url:
            replicas = start_replicas(
                REPLICAS,
                database=database,
                auth_url=auth_url,
                scratch=scratch,
                period_s=period,
                shards=SHARDS,
                # A survivor gets the killed replica's heartbeat connections beside its own;
                # the rest of the open-file limit keeps ping connections open.
                max_connections=2 * per_simulator + 500,
                startup_s=180,
                takeover_spread_s=args.takeover_spread_s,
            )
            urls = replicas.urls
            progress(f"{REPLICAS} monitoring replicas up ({SHARDS} shards, ping period {period} s)")
            for number in range(REPLICAS):
                control = free_port()
                heartbeats = ",".join(
                    f"127.0.0.1:{replicas.heartbeat_ports[(number + step) % REPLICAS]}" for step in range(REPLICAS)
                )
                log = scratch / f"simulator-{number}.log"
                simulator = start(
                    [
                        "simulate", "equipment",
                        "--devices", str(per_simulator),
                        "--prefix", f"sim{number}",
                        "--port", str(free_port()),
                        "--monitoring", urls[number],
                        "--heartbeat", heartbeats,
                        "--branch", f"b{number}",
                        "--branches", str(BRANCHES_PER_SIMULATOR),
                        "--control-port", str(control),
                        "--ramp", str(args.ramp_s),
                    ],
                    env=clean_env(SMARTGYM_SIMULATOR_TOKEN=operator),
                    cwd=ROOT,
                    log=log,
                )  # fmt: skip
                simulators.append((simulator, f"http://127.0.0.1:{control}", log))
                if args.simulator_nice:
                    # The simulated devices stand for 15,000 machines with CPUs of their own;
                    # here they share two cores with the replicas, and a simulator starved by
                    # the replicas' start-up work answers pings late (its event loop was
                    # measured 1.5-2.8 s late then): timeouts that are not monitoring's fault.
                    # Scheduled ahead of the replicas they answer as devices would (the
                    # replicas get no help). Off by default: the figures are taken without it.
                    try:
                        os.setpriority(os.PRIO_PROCESS, simulator.pid, args.simulator_nice)
                    except OSError as exc:
                        progress(f"could not give the simulators priority ({exc}); they compete with the replicas")
            simulators_started = time.time()
            async with httpx.AsyncClient(timeout=60) as client:
                deadline = time.monotonic() + 300
                while True:
                    for simulator, _, log in simulators:
                        if simulator.poll() is not None:
                            raise SystemExit(log.read_text()[-2000:])
                    try:
                        ok = [await metric(client, url, OK_GAUGE) for url in urls]
                    except httpx.HTTPError:
                        ok = [0.0]
                    if sum(ok) >= total:
                        break
                    if time.monotonic() > deadline:
                        raise SystemExit(f"devices seen healthy per replica: {ok} of {total}")
                    await asyncio.sleep(1.0)
                all_healthy = time.time()
                progress(
                    f"{total} devices healthy {all_healthy - simulators_started:.1f} s after the simulators started,"
                    f" per replica {[int(count) for count in ok]}"
                )
                figures["devices_per_replica_before"] = [int(count) for count in ok]

                async def pings(since: float) -> dict[str, list[list[Any]]]:
                    merged: dict[str, list[list[Any]]] = {}
                    for _, control, _ in simulators:
                        merged.update((await client.get(f"{control}/pings", params={"since": since})).json())
                    return merged

                # Steady state: every device pinged by exactly one replica.
                steady = time.time()
                cpu_before = [cpu_seconds(process.pid) for process in replicas.processes]
                simulators_before = [cpu_seconds(simulator.pid) for simulator, _, _ in simulators]
                wall_before = time.monotonic()
                await asyncio.sleep(args.windows * period)
                wall = time.monotonic() - wall_before
                cpu_share = [
                    (cpu_seconds(process.pid) - before) / wall
                    for process, before in zip(replicas.processes, cpu_before, strict=True)
                ]
                simulator_share = (
                    sum(
                        cpu_seconds(simulator.pid) - before
                        for (simulator, _, _), before in zip(simulators, simulators_before, strict=True)
                    )
                    / wall
                )
                progress(f"CPU share per replica {[f'{share:.1%}' for share in cpu_share]}; load {os.getloadavg()}")
                before = pinged_by(await pings(steady), steady, time.time())
                orphans = {device for device, agents in before.items() if agents == {Replicas.name(0)}}

                held_before = [shard for shard, holder, _ in await lease_rows(database) if holder == Replicas.name(0)]
                killed = time.time()
                replicas.kill(0)
                progress(f"killed replica-0 ({len(orphans)} devices); waiting for its shards to be taken")
                taken = await wait_for_takeover(database, Replicas.name(0), limit_s=3 * period)
                taken_after = math.nan if taken is None else time.time() - killed
                if taken is None:
                    fail("the killed replica's shards were not all taken within three ping periods")
                # The new holders ping each device at its phase within the next period.
                await asyncio.sleep(period)
                settled = time.time()
                await asyncio.sleep(args.windows * period)
                everything = await pings(killed - 2 * period)
                after = pinged_by(everything, settled, time.time())
                ok_after = [int(await metric(client, url, OK_GAUGE)) for url in urls[1:]]
                faults = (await client.get(f"{urls[1]}/v1/faults?open=false&limit=1000", headers=auth)).json()
                lags = [(await client.get(f"{control}/lag")).json() for _, control, _ in simulators]
                load = os.getloadavg()
    finally:
        if replicas is not None:
            replicas.stop()
        for simulator, _, _ in simulators:
            stop(simulator)
        databases.drop_all()

    gaps: list[float] = []
    # From the kill: what the takeover itself costs (the lease's TTL, the next renewal,
    # loading, the first ping), without the time since the dead replica's last ping.
    resumed: list[float] = []
    for device in orphans:
        entries = sorted((at, str(agent).rsplit("/", 1)[-1]) for at, agent in everything.get(device, []))
        last_dead = max((at for at, agent in entries if agent == Replicas.name(0)), default=None)
        first_new = min((at for at, agent in entries if agent != Replicas.name(0) and at > killed), default=None)
        if last_dead is not None and first_new is not None:
            gaps.append(first_new - last_dead)
            resumed.append(first_new - killed)
    twice_before = sum(1 for agents in before.values() if len(agents) > 1)
    twice_after = sum(1 for agents in after.values() if len(agents) > 1)
    unwatched_before = total - len(before)
    unwatched_after = total - len(after)
    still_dead = sum(1 for agents in after.values() if Replicas.name(0) in agents)
    opened = [datetime.fromisoformat(row["opened_at"]).timestamp() for row in faults]
    alarms_before = sum(1 for at in opened if at < killed)
    alarms_during = len(opened) - alarms_before
    reasons = Counter(str(row["reason"])[:50] for row in faults).most_common(3)
    # The replicas' own lateness and lost leases, from their logs (WARNING lines).
    replica_lates: list[list[float]] = []
    lease_losses: list[int] = []
    for number in range(REPLICAS):
        text = (scratch / f"monitoring-{number}.log").read_text(errors="replace")
        replica_lates.append(
            [
                float(line.split("ran ", 1)[1].split(" s late", 1)[0])
                for line in text.splitlines()
                if "event loop ran" in line
            ]
        )
        lease_losses.append(text.count("shard leases ran out"))
    # Where the false alarms came from: which simulator's devices, which replica watched
    # them, when (from the simulators' start), and whether that simulator's own event loop
    # was running late then (a starved simulator answers late: not the monitor's fault).
    by_simulator = Counter(str(row["device_id"]).split("-", 1)[0] for row in faults)
    by_replica = Counter(
        "/".join(sorted(agent.rsplit("/", 1)[-1] for _, agent in everything.get(str(row["device_id"]), []))[:1]) or "?"
        for row in faults
    )
    seconds = sorted(at - simulators_started for at in opened)
    worst_lag = [round(float(lag.get("worst_s") or 0.0), 2) for lag in lags]

    def lagging_then(row: dict[str, Any], at: float) -> bool:
        number = int(str(row["device_id"]).split("-", 1)[0].removeprefix("sim"))
        return any(at - 3.0 <= float(when) <= at + 0.5 for when, _ in lags[number].get("spells", []))

    lagging = sum(1 for row, at in zip(faults, opened, strict=True) if lagging_then(row, at))
    (scratch / "false-alarms.json").write_text(
        json.dumps(
            {
                "simulators_started": simulators_started,
                "all_healthy": all_healthy,
                "killed": killed,
                "faults": faults,
                "lags": lags,
            }
        )
    )
    progress(f"diagnostics in {scratch / 'false-alarms.json'}")
    for what, count in (
        ("devices pinged by two replicas in one window before the kill", twice_before),
        ("devices pinged by two replicas in one window after the kill", twice_after),
        ("devices nobody pinged before the kill", unwatched_before),
        ("devices nobody pinged after the takeover", unwatched_after),
        ("false alarms before the kill", alarms_before),
        ("false alarms during and after the takeover", alarms_during),
    ):
        if count:
            fail(f"{what}: {count}")
    gap = summary(gaps)
    since_kill = summary(resumed)
    table(
        f"{REPLICAS} replicas, {total} devices over {REPLICAS * BRANCHES_PER_SIMULATOR} branches, {SHARDS} shards, "
        f"ping period {period} s, windows of {args.windows * period:.0f} s; heartbeats connect over {args.ramp_s:.0f} s"
        f" per simulator, simulators at nice {args.simulator_nice}; load {load[0]:.1f} / {load[1]:.1f}",
        ["figure", "value"],
        [
            ["devices per replica (ok gauge) before", figures["devices_per_replica_before"]],
            ["CPU share per replica while pinging", " / ".join(f"{share:.1%}" for share in cpu_share)],
            ["CPU share of the three simulators together", f"{simulator_share:.1%}"],
            ["devices pinged by two replicas in one window (before / after)", f"{twice_before} / {twice_after}"],
            ["devices nobody pinged (before / after)", f"{unwatched_before} / {unwatched_after}"],
            ["shards the killed replica held", len(held_before)],
            ["its devices (pinged only by it)", len(orphans)],
            ["kill -> every lease held by a survivor (s)", f"{taken_after:.2f}"],
            ["devices per survivor (ok gauge) after", ok_after],
            ["false alarms before the kill / after it (no device failed)", f"{alarms_before} / {alarms_during}"],
            *[[f"  reason: {reason}", count] for reason, count in reasons],
            ["pinged by the dead replica after the kill", still_dead],
            ["  false alarms by simulator", dict(by_simulator)],
            ["  false alarms by the replica that pinged the device", dict(by_replica)],
            [
                "  false alarms, s after the simulators started (first / median / last)",
                " / ".join(f"{seconds[int(q * (len(seconds) - 1))]:.1f}" for q in (0, 0.5, 1)) if seconds else "-",
            ],
            ["  of which the device's simulator ran > 0.2 s late within 3 s before", lagging],
            ["simulators' worst event-loop lateness (s)", worst_lag],
            [
                "replicas: event loop > 0.5 s late (times / worst s)",
                " / ".join(f"{len(lates)} / {max(lates, default=0.0):.2f}" for lates in replica_lates),
            ],
            ["replicas: leases run out without renewal (times)", lease_losses],
            ["devices all healthy, s after the simulators started", f"{all_healthy - simulators_started:.1f}"],
        ],
    )
    table(
        "killed replica's devices: last ping by it -> first ping by a survivor (s)",
        ["n", "p50", "p95", "p99", "max"],
        [[*spread_cells(gap, ("p50", "p95", "p99"), 2), f"{gap['max']:.2f}"]],
    )
    table(
        "killed replica's devices: kill -> first ping by a survivor (s)",
        ["n", "p50", "p95", "p99", "max"],
        [[*spread_cells(since_kill, ("p50", "p95", "p99"), 2), f"{since_kill['max']:.2f}"]],
    )
    return {
        "shard_devices": total,
        "shard_replicas": REPLICAS,
        "shard_period_s": period,
        "shard_cpu_share_per_replica": [round(share, 3) for share in cpu_share],
        "shard_simulators_cpu_share": round(simulator_share, 3),
        "shard_takeover_s": None if math.isnan(taken_after) else round(taken_after, 2),
        "shard_orphaned_devices": len(orphans),
        "shard_gap_p50_s": figure(gap["p50"]),
        "shard_gap_p95_s": figure(gap["p95"]),
        "shard_gap_max_s": figure(gap["max"]),
        "shard_gap_n": len(gaps),
        "shard_kill_to_ping_p50_s": figure(since_kill["p50"]),
        "shard_kill_to_ping_p95_s": figure(since_kill["p95"]),
        "shard_kill_to_ping_max_s": figure(since_kill["max"]),
        "shard_kill_to_ping_n": len(resumed),
        "shard_takeover_spread_s": args.takeover_spread_s,
        "shard_watched_twice": twice_before + twice_after,
        "shard_unwatched_after_kill": unwatched_after,
        "shard_false_alarms_before_kill": alarms_before,
        "shard_false_alarms": alarms_during,
        "shard_load_1min": round(load[0], 2),
        "shard_simulator_worst_lag_s": worst_lag,
        "shard_replica_worst_lag_s": [round(max(lates, default=0.0), 2) for lates in replica_lates],
        "shard_lease_runouts": lease_losses,
        "shard_ramp_s": args.ramp_s,
        "shard_simulator_nice": args.simulator_nice,
    }


async def run(args: argparse.Namespace) -> None:
    ensure_services()
    began = time.monotonic()
    phases = [phase for phase in args.phases.split(",") if phase]
    figures: dict[str, Any] = {}
    if "single" in phases:
        one = single(args)
        figures.update(
            {
                "monitoring_devices_per_process": one.get("monitoring_devices_per_process", 0),
                "monitoring_false_alarms": one.get("monitoring_false_alarms"),
                "monitoring_cpu_share_at_devices": one.get("monitoring_cpu_share"),
                "devices": one.get("devices"),
                "heartbeat_devices": one.get("heartbeat_devices"),
                "hang_to_push_p95_s": one.get("hang_to_push_p95_s"),
                # Crashes of devices that hold a heartbeat connection (as every production
                # device does); a ping-only device's crash is its own figure.
                "crash_to_push_p95_s": one.get("crash_to_push_p95_s"),
                "crash_to_push_p99_s": one.get("crash_to_push_p99_s"),
                "crash_no_heartbeat_to_push_p95_s": one.get("crash_no_heartbeat_to_push_p95_s"),
                "hang_to_push_p99_s": one.get("hang_to_push_p99_s"),
                "hang_failures": one.get("hang_failures"),
                "crash_failures": one.get("crash_failures"),
                "crash_no_heartbeat_failures": one.get("crash_no_heartbeat_failures"),
                "crash_p95_under_3_s": one.get("crash_p95_under_3_s"),
            }
        )
    if "shards" in phases:
        figures.update(await shards(args))
    print(f"\nmonitoring scale - {machine()}; {time.monotonic() - began:.0f} s")
    emit({**figures, "failures": failures(), "machine": machine()})
    if failures():
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", default="single,shards")
    parser.add_argument("--devices", type=int, default=5000, help="single: devices in one process")
    parser.add_argument("--heartbeat-devices", type=int, default=5000, help="single: of which keep a heartbeat")
    parser.add_argument("--failures", type=int, default=20, help="single: timed failures per mode")
    parser.add_argument("--reboots", type=int, default=5, help="single: quick reboots (must not be announced)")
    parser.add_argument("--steady-s", type=float, default=15.0, help="single: CPU window")
    parser.add_argument("--shard-devices", type=int, default=4500, help="shards: devices over three replicas")
    parser.add_argument("--period", type=float, default=10.0, help="shards: ping period (production: 10)")
    parser.add_argument("--windows", type=int, default=1, help="shards: periods per observation window")
    parser.add_argument(
        "--simulator-nice",
        type=int,
        default=0,
        help="shards: scheduling niceness of the device simulators (negative, e.g. -5: ahead of the replicas)",
    )
    parser.add_argument(
        "--ramp-s",
        type=float,
        default=5.0,
        help="shards: each simulator's devices connect their heartbeats over this many seconds (0: all at once)",
    )
    parser.add_argument(
        "--takeover-spread-s",
        type=float,
        default=None,
        help="shards: SMARTGYM_MONITORING_TAKEOVER_SPREAD_S of the replicas (default: the product's; 0: off)",
    )
    parser.add_argument(
        "--full", action="store_true", help="the aim's sizes: 20,000 devices in one process, 15,000 over three"
    )
    parser.add_argument("--long", action="store_true", help="--full with more failures and longer windows")
    args = parser.parse_args()
    if args.full or args.long:
        args.devices, args.shard_devices = 20_000, 15_000
        # 100 failures per case: enough for a p99 (fewer print none).
        args.failures, args.reboots, args.steady_s, args.windows = 100, 10, 30.0, 2
    if args.long:
        args.failures, args.reboots, args.steady_s, args.windows = 200, 50, 60.0, 4
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
