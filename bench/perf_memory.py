"""Memory under sustained load: each service's resident set (RSS) while its benchmark load
runs, and how much it grows between the middle and the end of the run.

Seven services carry a steady load at once, each from load generators in their own
processes:

- **running**: runners streaming a point a second to one replica, friends watching
  through the same replica, RabbitMQ fan-out on;
- **gateway**: paced requests with a pool of tokens, 10 % first-seen, to an upstream;
- **monitoring**: simulated devices with heartbeat connections pinged every 10 s (the
  production period), one crashing and coming back every ``--crash-every-s``;
- **notification**: equipment-fault events at ``--push-rate`` a second from this process,
  plus monitoring's announcements, pushed to the local FCM stand-in;
- **auth**: members signing in at ``--login-rate`` a second (production Argon2id; each
  login followed by a refresh and ``/me``), every fifth attempt a wrong password for an
  unknown address;
- **access** and **facemodel**: members entering at a gate by face (``--face-rate``: a
  detection, embedding and identification each, in a gallery of ``--door-members``) and
  by entry pass (``--pass-rate``), every grant a relay frame on a real serial line (a
  socat pty pair).

The other services (helper, search, branch_owner, mlops) are not covered here: their
benchmarks time requests, without RSS sampling.

RSS is read from /proc every 5 s. The aim is stated for minutes 5 to 10 of a 10-minute
load (``--minutes 10``); the default is a short run (2 minutes) comparing the second half
with the first, which finds a steady leak but not a slow one. Growth = RSS at the end
(mean of the last three samples) over RSS at the middle (mean of the three samples
around it), in per cent. Every position must reach its watchers, every request its
answer, every event its push, every crash its announcement, every sign-in attempt the
answer it must get and every entry its grant and relay frame, or the run fails; false
alarms are counted and printed.

    python bench/perf_memory.py [--minutes 2] [--runners 300] [--per-run 5] [--rate 300]
        [--devices 2000] [--push-rate 50] [--crash-every-s 30] [--login-rate 4] [--members 50]
        [--face-rate 1] [--pass-rate 2] [--door-members 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench._accounts import accounts_load
from bench._alerts import alerts_load
from bench._broker import PrivateBroker
from bench._common import (
    ROOT,
    STARTUP_S,
    emit,
    ensure_services,
    fail,
    jwks_app,
    machine,
    progress,
    rss_mib,
    shared_broker_namespace,
    stop_quietly,
    table,
)
from bench._door import door_load
from bench._live import drive
from bench.perf_scaleout import load_process
from bench.running_live_fanout import People, judge, running_env, start_running
from common.migrations import upgrade
from common.security import Role, SigningKey, TokenIssuer, jwks_document
from tests.support.apps import free_port, serving
from tests.support.infra import PG_ADMIN_URL, PostgresDatabases
from tests.support.processes import clean_env, start, wait_healthy

SAMPLE_S = 5.0


def growth_pct(samples: list[tuple[float, float]], seconds: float) -> tuple[float, float, float]:
    """(RSS at the middle, RSS at the end, growth %) from (t, MiB) samples."""
    if len(samples) < 6:
        return float("nan"), float("nan"), float("nan")
    middle_index = min(range(len(samples)), key=lambda index: abs(samples[index][0] - seconds / 2))
    middle = statistics.fmean(value for _, value in samples[max(0, middle_index - 1) : middle_index + 2])
    end = statistics.fmean(value for _, value in samples[-3:])
    return middle, end, (end - middle) / middle * 100


async def run(args: argparse.Namespace) -> None:
    ensure_services()
    seconds = args.minutes * 60
    scratch = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    databases = PostgresDatabases(PG_ADMIN_URL)
    database = databases.create("bench_memory")
    upgrade("running", database)
    samples: dict[str, list[tuple[float, float]]] = {"running": [], "gateway": [], "monitoring": [],
                                                     "notification": [], "auth": [], "facemodel": [],
                                                     "access": []}  # fmt: skip
    processes: list[Any] = []
    context = multiprocessing.get_context("fork")
    key = SigningKey.generate()
    issuer = TokenIssuer(key, issuer="smartgym-auth", audience="smartgym", ttl=timedelta(hours=1))
    from fastapi import FastAPI

    keys_app = FastAPI()

    @keys_app.get("/.well-known/jwks.json")
    async def jwks() -> dict[str, object]:
        return jwks_document([key])

    @keys_app.get("/revocations")
    async def revocations() -> list[object]:
        return []  # as auth answers with none in force (see bench._common.jwks_app)

    broker = PrivateBroker()
    booting: asyncio.Task[PrivateBroker] | None = None
    try:
        async with (
            serving(jwks_app()) as auth_url,
            serving(keys_app) as gateway_auth_url,
            contextlib.AsyncExitStack() as stack,
        ):
            # A broker node of its own: the shared one is restarted by other jobs' failover
            # tests, which a ten-minute run would not survive.
            progress("starting a private RabbitMQ node")
            booting = asyncio.create_task(asyncio.to_thread(broker.start))
            await booting
            live_port = free_port()
            namespace = shared_broker_namespace()
            # Waited for off the loop: the loop serves the keys the services fetch as they start.
            env = running_env(database, namespace, auth_url, scratch, live_port, "r1", args.per_run, broker.url)
            starting = asyncio.create_task(asyncio.to_thread(start_running, env, scratch, "running"))
            upstream_port, gateway_port = free_port(), free_port()
            upstream = start_python(["bench/_upstream.py", str(upstream_port)], scratch / "upstream.log")
            processes.append(upstream)
            routes = [{"prefix": "/api/svc", "service": "svc", "upstreams": [f"http://127.0.0.1:{upstream_port}"],
                       "rate_limit": "1000000/second"}]  # fmt: skip
            env = clean_env(
                SMARTGYM_GATEWAY_ROUTES=json.dumps(routes),
                SMARTGYM_AUTH_URL=gateway_auth_url,
                SMARTGYM_GATEWAY_IP_RATE_LIMIT="1000000/second",
                SMARTGYM_LOG_LEVEL="WARNING",
                SMARTGYM_DATA_DIR=str(scratch),
            )
            gateway = start(["serve", "gateway", "--port", str(gateway_port)], env=env, cwd=ROOT,
                            log=scratch / "gateway.log")  # fmt: skip
            processes.append(gateway)
            await asyncio.to_thread(wait_healthy, f"http://127.0.0.1:{gateway_port}", gateway,
                                    scratch / "gateway.log", STARTUP_S)  # fmt: skip
            running = await starting
            processes.append(running)
            async with httpx.AsyncClient() as client:
                for _ in range(100):
                    try:
                        await client.post(f"http://127.0.0.1:{upstream_port}/reset")
                        break
                    except httpx.HTTPError:
                        await asyncio.sleep(0.1)
            regulars = [issuer.issue(f"member-{n}", [Role.CUSTOMER]) for n in range(50)]
            fresh = [issuer.issue(f"visitor-{n}", [Role.CUSTOMER]) for n in range(int(args.rate * seconds * 0.1) + 1)]
            pipe, end = context.Pipe()
            url = f"http://127.0.0.1:{gateway_port}/api/svc/ping"
            loader = context.Process(
                target=load_process, args=(url, args.rate, seconds, 0, regulars, fresh, 0.1, end), daemon=True
            )  # a run that fails midway must not wait for it at exit
            loader.start()

            alerts = await stack.enter_async_context(alerts_load(
                databases=databases, broker_url=broker.url, namespace=namespace, scratch=scratch,
                devices=args.devices, push_rate=args.push_rate, crash_every_s=args.crash_every_s,
            ))  # fmt: skip
            accounts = await stack.enter_async_context(accounts_load(
                databases=databases, broker_url=broker.url, namespace=namespace, scratch=scratch,
                members=args.members, rate=args.login_rate,
            ))  # fmt: skip
            door = await stack.enter_async_context(door_load(
                databases=databases, scratch=scratch, members=args.door_members, face_rate=args.face_rate,
                pass_rate=args.pass_rate,
            ))  # fmt: skip
            pids = {"running": running.pid, "gateway": gateway.pid, **alerts.pids, **accounts.pids, **door.pids}

            def sample(at: float) -> None:
                for name, pid in pids.items():
                    samples[name].append((at, rss_mib(pid)))

            people = People(database, args.runners, args.per_run)
            base = f"ws://127.0.0.1:{live_port}"
            started = time.monotonic()
            gateway_going = [False]

            def tick(at: float) -> None:
                if not gateway_going[0]:  # the gateway's load starts with the live stream
                    gateway_going[0] = True
                    pipe.send("go")
                sample(at)

            progress(f"{args.minutes:g} min of load on running, the gateway, monitoring, notification and auth")
            alerting = asyncio.create_task(alerts.run(seconds))
            signing_in = asyncio.create_task(accounts.run(seconds))
            entering = asyncio.create_task(door.run(seconds))
            live = await drive(people.runner_urls(base), people.watcher_plan([base]), seconds=seconds,
                               pids={"running": running.pid}, on_tick=tick, tick_s=SAMPLE_S,
                               limit_s=60)  # fmt: skip
            await alerting
            await signing_in
            await entering
            alerted = await alerts.verify()
            signed = accounts.verify()
            entered = await door.verify()
            report = await asyncio.to_thread(pipe.recv)
            loader.join(10)
            elapsed = time.monotonic() - started
            async with httpx.AsyncClient() as client:
                seen = (await client.get(f"http://127.0.0.1:{upstream_port}/stats")).json()
    finally:
        for process in processes:
            stop_quietly(process)
        if booting is not None:
            await asyncio.to_thread(broker.stop)
        databases.drop_all()

    judge("running", live)
    if len(set(report["answered"])) < report["sent"]:
        fail(f"gateway: {report['sent'] - len(set(report['answered']))} of {report['sent']} requests not answered")
    if seen["requests"] != seen["distinct"]:
        fail(f"gateway: the upstream saw {seen['requests'] - seen['distinct']} requests twice")
    rows = []
    figures: dict[str, Any] = {"machine": machine(), "minutes": args.minutes}
    worst = float("-inf")
    for name, values in samples.items():
        middle, end_rss, growth = growth_pct(values, seconds)
        worst = max(worst, growth)
        rows.append([
            name, len(values), f"{values[0][1]:.1f}" if values else "-", f"{middle:.1f}", f"{end_rss:.1f}",
            f"{growth:+.2f} %", "met" if growth <= 5 else "NOT met",
        ])  # fmt: skip
        figures[f"{name}_rss_mib"] = round(end_rss, 1)
        figures[f"{name}_rss_growth_pct"] = round(growth, 2)
    table(
        f"RSS under load ({args.minutes:g} min, {machine()}): running {args.runners} runners x {args.per_run} "
        f"watchers; gateway {args.rate:.0f} requests/s; monitoring {args.devices} devices; notification "
        f"{args.push_rate:g} events/s; auth {args.login_rate:g} sign-ins/s; door {args.face_rate:g} faces/s and "
        f"{args.pass_rate:g} passes/s, {args.door_members} members",
        ["service", "samples", "first MiB", "middle MiB", "end MiB", "growth middle -> end", "<= 5 %"],
        rows,
    )  # fmt: skip
    print(
        f"load: {live['watched'].distinct} positions delivered, {len(report['answered'])} requests answered "
        f"in {elapsed:.0f} s; {alerted['pushes']} of {alerted['events_published']} events pushed; "
        f"{alerted['crashes_announced']} of {alerted['crashes']} crashes announced; "
        f"{alerted['false_alarms']} false alarms{''.join(f' ({r})' for r in alerted['false_alarm_reasons'])}; "
        f"{signed['sign_ins']} sign-ins and {signed['wrong_passwords']} wrong passwords answered as they must, "
        f"{signed['unexpected']} otherwise; {entered['face_entries']} face and {entered['pass_entries']} pass "
        f"entries granted with {entered['relay_frames']} relay frames, {entered['not_granted']} not granted"
    )
    if args.minutes < 10:
        print(f"SHORT RUN: growth is the end of a {args.minutes:g}-minute load over its middle; the aim is stated "
              "for minute 5 -> 10 of a 10-minute load (--minutes 10), which also covers running's ten-minute "
              "full garbage collection")  # fmt: skip
    figures["rss_growth_pct_max"] = round(worst, 2)
    figures["short_run"] = args.minutes < 10
    figures["deliveries"] = live["watched"].distinct
    figures["requests"] = len(report["answered"])
    figures["pushes"] = alerted["pushes"]
    figures["crashes_announced"] = alerted["crashes_announced"]
    figures["monitoring_false_alarms"] = alerted["false_alarms"]
    figures["sign_ins"] = signed["sign_ins"]
    figures["face_entries"] = entered["face_entries"]
    figures["pass_entries"] = entered["pass_entries"]
    emit(figures)


def start_python(args: list[str], log: Path) -> Any:
    import subprocess

    return subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="load duration (10 for the stated aim)")
    parser.add_argument("--runners", type=int, default=300)
    parser.add_argument("--per-run", type=int, default=5)
    parser.add_argument("--rate", type=float, default=300.0, help="gateway requests/s")
    parser.add_argument("--devices", type=int, default=2000, help="monitoring: simulated devices")
    parser.add_argument("--push-rate", type=float, default=50.0, help="notification: events/s")
    parser.add_argument("--login-rate", type=float, default=4.0, help="auth: sign-in attempts/s")
    parser.add_argument("--members", type=int, default=50, help="auth: members signing in")
    parser.add_argument("--face-rate", type=float, default=1.0, help="door: face entries/s")
    parser.add_argument("--pass-rate", type=float, default=2.0, help="door: entry-pass entries/s")
    parser.add_argument("--door-members", type=int, default=10_000, help="door: members in the branch's gallery")
    parser.add_argument("--crash-every-s", type=float, default=30.0, help="monitoring: a device crashes this often")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
