"""Monitoring at scale: devices per process, and devices sharded over three replicas.

Two phases, each with its own processes:

``single``: one monitoring process with 20,000 devices at the production defaults
(10 s ping period, 1 s timeout) — run by ``bench/monitoring_fault_latency.py`` (monitoring
and notification as processes, device simulators, the FCM stand-in timing every push),
whose JSON line is read back: CPU share of one core while pinging, false alarms,
fault → push for hangs and crashes.

``shards``: three monitoring replicas (``SMARTGYM_MONITORING_SHARDS``, leases in
monitoring's database) and 15,000 devices over 150 branches, each simulator registering
through a different replica and keeping its heartbeats on it (reconnecting to the next
one when it goes). Every simulated device records which replica pinged it (the
User-Agent names the replica), so "watched twice" and "unwatched" are read at the
devices, not from monitoring's own account. After a steady window one replica is killed
(``kill -9``): the time until its leases are all held by the others, the gap each of its
devices saw between its last ping and the first from a survivor, devices pinged by two
replicas in one window, devices nobody pinged, and false alarms (any fault: no device
fails in this phase).

    python bench/monitoring_scale.py [--phases single,shards] [--devices 20000]
        [--shard-devices 15000] [--period 10] [--long]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import psycopg

from bench._common import (
    cpu_seconds,
    emit,
    ensure_services,
    fail,
    failures,
    jwks_app,
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
from tests.support.infra import PG_ADMIN_URL, RABBITMQ_URL, PostgresDatabases
from tests.support.processes import clean_env, start, stop, wait_healthy

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
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    sys.stdout.write(result.stdout)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        fail(f"single-process run failed ({result.returncode}): {result.stderr[-1500:]}")
        return {}
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


async def metric(client: httpx.AsyncClient, url: str, prefix: str) -> float:
    text = (await client.get(f"{url}/metrics")).text
    line = next((row for row in text.splitlines() if row.startswith(prefix)), "")
    return float(line.rsplit(" ", 1)[-1]) if line else 0.0


async def leases(database: str) -> list[tuple[int, str | None, bool]]:
    async with await psycopg.AsyncConnection.connect(database.replace("+psycopg", "")) as connection:
        rows = await (
            await connection.execute("SELECT shard, holder, expires_at > now() FROM shard_leases ORDER BY shard")
        ).fetchall()
    return [(row[0], row[1], bool(row[2])) for row in rows]


def agents_in(pings: dict[str, list[list[Any]]], since: float, until: float) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = defaultdict(set)
    for device_id, entries in pings.items():
        for at, agent in entries:
            if since <= at < until:
                seen[device_id].add(str(agent).rsplit("/", 1)[-1])
    return seen


async def shards(args: argparse.Namespace) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="bench-monitoring-scale-"))
    databases = PostgresDatabases(PG_ADMIN_URL)
    database = databases.create("bench_monshard")
    upgrade("monitoring", database)
    period = args.period
    per_simulator = math.ceil(args.shard_devices / REPLICAS)
    total = per_simulator * REPLICAS
    api_ports = [free_port() for _ in range(REPLICAS)]
    heartbeat_ports = [free_port() for _ in range(REPLICAS)]
    urls = [f"http://127.0.0.1:{port}" for port in api_ports]
    operator = tokens.issuer().issue(str(uuid.uuid4()), [Role.OPERATOR], [])
    auth = {"authorization": f"Bearer {operator}"}
    replicas: list[subprocess.Popen[bytes]] = []
    simulators: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    figures: dict[str, Any] = {}
    try:
        async with serving(jwks_app()) as auth_url:
            for number in range(REPLICAS):
                env = clean_env(
                    SMARTGYM_BROKER_URL=RABBITMQ_URL,
                    SMARTGYM_BUS_NAMESPACE=f"bench{uuid.uuid4().hex[:8]}",
                    SMARTGYM_AUTH_URL=auth_url,
                    SMARTGYM_DATA_DIR=str(scratch),
                    SMARTGYM_LOG_LEVEL="WARNING",
                    SMARTGYM_MONITORING_DATABASE_URL=database,
                    SMARTGYM_MONITORING_HEARTBEAT_HOST="127.0.0.1",
                    SMARTGYM_MONITORING_HEARTBEAT_PORT=str(heartbeat_ports[number]),
                    SMARTGYM_MONITORING_EQUIPMENT_NETWORKS='{"*": ["127.1.0.0/16"]}',
                    SMARTGYM_MONITORING_PING_INTERVAL_S=str(period),
                    SMARTGYM_MONITORING_SHARDS=str(SHARDS),
                    SMARTGYM_MONITORING_REPLICA_ID=f"replica-{number}",
                    # Each replica may get every heartbeat connection after the others died.
                    SMARTGYM_MONITORING_MAX_CONNECTIONS=str(total + 500),
                )
                log = scratch / f"monitoring-{number}.log"
                replicas.append(
                    start(["serve", "monitoring", "--port", str(api_ports[number])], env=env, cwd=ROOT, log=log)
                )
            for number, process in enumerate(replicas):
                wait_healthy(urls[number], process, scratch / f"monitoring-{number}.log", timeout=180)
            progress(f"{REPLICAS} monitoring replicas up ({SHARDS} shards, ping period {period} s)")
            for number in range(REPLICAS):
                control = free_port()
                heartbeats = ",".join(
                    f"127.0.0.1:{heartbeat_ports[(number + step) % REPLICAS]}" for step in range(REPLICAS)
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
                    ],
                    env=clean_env(SMARTGYM_SIMULATOR_TOKEN=operator),
                    cwd=ROOT,
                    log=log,
                )  # fmt: skip
                simulators.append((simulator, f"http://127.0.0.1:{control}", log))
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
                progress(f"{total} devices healthy, per replica {[int(count) for count in ok]}")
                figures["devices_per_replica_before"] = [int(count) for count in ok]

                async def pings(since: float) -> dict[str, list[list[Any]]]:
                    merged: dict[str, list[list[Any]]] = {}
                    for _, control, _ in simulators:
                        merged.update((await client.get(f"{control}/pings", params={"since": since})).json())
                    return merged

                # Steady state: every device pinged by exactly one replica.
                steady = time.time()
                cpu_before = [cpu_seconds(process.pid) for process in replicas]
                wall_before = time.monotonic()
                await asyncio.sleep(args.windows * period)
                cpu_share = [
                    (cpu_seconds(process.pid) - before) / (time.monotonic() - wall_before)
                    for process, before in zip(replicas, cpu_before, strict=True)
                ]
                before = agents_in(await pings(steady), steady, time.time())
                orphans = {device for device, agents in before.items() if agents == {"replica-0"}}

                victim = replicas[0]
                victim.kill()  # kill -9: its leases are simply not renewed any more
                killed = time.time()
                victim.wait()
                progress(f"killed replica-0 ({len(orphans)} devices); waiting for its shards to be taken")
                held_before = [lease for lease in await leases(database) if lease[1] == "replica-0"]
                taken_after = math.nan
                while time.time() - killed < 3 * period:
                    current = await leases(database)
                    if all(holder not in (None, "replica-0") and live for _, holder, live in current):
                        taken_after = time.time() - killed
                        break
                    await asyncio.sleep(0.05)
                if math.isnan(taken_after):
                    fail("the killed replica's shards were not all taken within three ping periods")
                # The new holders ping each device at its phase within the next period.
                await asyncio.sleep(period)
                settled = time.time()
                await asyncio.sleep(args.windows * period)
                everything = await pings(killed - 2 * period)
                after = agents_in(everything, settled, time.time())
                ok_after = [int(await metric(client, url, OK_GAUGE)) for url in urls[1:]]
                faults = (await client.get(f"{urls[1]}/v1/faults?open=false&limit=1000", headers=auth)).json()
    finally:
        for process in replicas:
            stop(process)
        for simulator, _, _ in simulators:
            stop(simulator)
        databases.drop_all()

    gaps: list[float] = []
    for device in orphans:
        entries = sorted((at, str(agent).rsplit("/", 1)[-1]) for at, agent in everything.get(device, []))
        last_dead = max((at for at, agent in entries if agent == "replica-0"), default=None)
        first_new = min((at for at, agent in entries if agent != "replica-0" and at > killed), default=None)
        if last_dead is not None and first_new is not None:
            gaps.append(first_new - last_dead)
    twice_before = sum(1 for agents in before.values() if len(agents) > 1)
    twice_after = sum(1 for agents in after.values() if len(agents) > 1)
    unwatched_before = total - len(before)
    unwatched_after = total - len(after)
    still_dead = sum(1 for agents in after.values() if "replica-0" in agents)
    for what, count in (
        ("devices pinged by two replicas in one window before the kill", twice_before),
        ("devices pinged by two replicas in one window after the kill", twice_after),
        ("devices nobody pinged before the kill", unwatched_before),
        ("devices nobody pinged after the takeover", unwatched_after),
        ("false alarms during the takeover", len(faults)),
    ):
        if count:
            fail(f"{what}: {count}")
    gap = summary(gaps)
    table(
        f"{REPLICAS} replicas, {total} devices over {REPLICAS * BRANCHES_PER_SIMULATOR} branches, {SHARDS} shards, "
        f"ping period {period} s",
        ["figure", "value"],
        [
            ["devices per replica (ok gauge) before", figures["devices_per_replica_before"]],
            ["CPU share per replica while pinging", " / ".join(f"{share:.1%}" for share in cpu_share)],
            ["devices pinged by two replicas in one window (before / after)", f"{twice_before} / {twice_after}"],
            ["devices nobody pinged (before / after)", f"{unwatched_before} / {unwatched_after}"],
            ["shards the killed replica held", len(held_before)],
            ["its devices (pinged only by it)", len(orphans)],
            ["kill -> every lease held by a survivor (s)", f"{taken_after:.2f}"],
            ["devices per survivor (ok gauge) after", ok_after],
            ["false alarms (faults; no device failed)", len(faults)],
            ["pinged by the dead replica after the kill", still_dead],
        ],
    )
    table(
        "killed replica's devices: last ping by it -> first ping by a survivor (s)",
        ["n", "p50", "p95", "p99", "max"],
        [[*spread_cells(gap, ("p50", "p95", "p99"), 2), f"{gap['max']:.2f}"]],
    )
    return {
        "shard_devices": total,
        "shard_replicas": REPLICAS,
        "shard_period_s": period,
        "shard_cpu_share_per_replica": [round(share, 3) for share in cpu_share],
        "shard_takeover_s": None if math.isnan(taken_after) else round(taken_after, 2),
        "shard_orphaned_devices": len(orphans),
        "shard_gap_p50_s": None if math.isnan(gap["p50"]) else round(gap["p50"], 2),
        "shard_gap_p95_s": None if math.isnan(gap["p95"]) else round(gap["p95"], 2),
        "shard_gap_max_s": None if math.isnan(gap["max"]) else round(gap["max"], 2),
        "shard_gap_n": len(gaps),
        "shard_watched_twice": twice_before + twice_after,
        "shard_unwatched_after_kill": unwatched_after,
        "shard_false_alarms": len(faults),
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
                "crash_to_push_p95_s": one.get("crash_to_push_p95_s"),
                "hang_failures": one.get("hang_failures"),
                "crash_failures": one.get("crash_failures"),
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
    parser.add_argument("--devices", type=int, default=20_000, help="single: devices in one process")
    parser.add_argument("--heartbeat-devices", type=int, default=5000, help="single: of which keep a heartbeat")
    parser.add_argument("--failures", type=int, default=40, help="single: timed failures per mode")
    parser.add_argument("--reboots", type=int, default=10, help="single: quick reboots (must not be announced)")
    parser.add_argument("--steady-s", type=float, default=30.0, help="single: CPU window")
    parser.add_argument("--shard-devices", type=int, default=15_000, help="shards: devices over three replicas")
    parser.add_argument("--period", type=float, default=10.0, help="shards: ping period (production: 10)")
    parser.add_argument("--windows", type=int, default=2, help="shards: periods per observation window")
    parser.add_argument("--long", action="store_true", help="more failures and longer windows (several minutes)")
    args = parser.parse_args()
    if args.long:
        args.failures, args.reboots, args.steady_s, args.windows = 200, 50, 60.0, 4
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
