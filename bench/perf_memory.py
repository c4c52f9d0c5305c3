"""Memory under sustained load: each service's resident set (RSS) while its benchmark load
runs, and how much it grows between the middle and the end of the run.

Ten services carry a steady load at once, each in its own process. Running's runners and
watchers, the gateway's requests and the simulated devices come from processes of their
own; the other loads (a few requests a second each, 50 pushes a second into the FCM
stand-in) run in this process's event loop:

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
  socat pty pair);
- **helper** and **branch_owner**: a helper submitting a task with a phone-sized photo
  every ``1 / --task-rate`` s, judged by helper; the owner paging the review queue once a
  second and approving what waits;
- **search**: queries at ``--query-rate`` (the relevance set's) over ``--branches`` seeded
  branches on the embedded engine, and new reviews as events at ``--review-rate``, each
  re-indexing its branch.

Not covered: mlops (a deploy now and then, no steady load; ``bench/mlops_deploy.py``).

RSS is read from /proc every 5 s. The aim is stated for minutes 5 to 10 of a 10-minute
load (``--minutes 10``); the default is a short run (2 minutes) comparing the second half
with the first, which finds a steady leak but not a slow one. Growth = RSS at the end
(mean of the last three samples) over RSS at the middle (mean of the three samples
around it), in per cent. Every position must reach its watchers, every request its
answer, every event its push, every crash its announcement, every sign-in attempt the
answer it must get, every entry its grant and relay frame, every task its verdict and
every posted review its place on its branch's page, or the run fails; false alarms are
counted and printed.

    python bench/perf_memory.py [--minutes 2] [--runners 300] [--per-run 5] [--rate 300]
        [--devices 2000] [--push-rate 50] [--crash-every-s 30] [--login-rate 4] [--members 50]
        [--face-rate 1] [--pass-rate 2] [--door-members 10000] [--task-rate 0.5]
        [--query-rate 5] [--review-rate 1] [--branches 1000]
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
from typing import Any, Protocol

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
    machine,
    progress,
    rss_mib,
    shared_broker_namespace,
    stop_quietly,
    table,
    wait_answering,
)
from bench._door import door_load
from bench._helpers import helpers_load
from bench._live import drive
from bench._scaleout_gateway import load_process, load_report, start_load
from bench._search import search_load
from bench.running_live_fanout import People, judge, running_env, start_running
from common.migrations import upgrade
from common.security import Role
from tests.support import tokens
from tests.support.apps import free_port, serving
from tests.support.infra import PG_ADMIN_URL, PostgresDatabases
from tests.support.processes import clean_env, start, wait_healthy

SAMPLE_S = 5.0


class Load(Protocol):
    """A service's steady load: its processes, the load itself, and a count of what came of
    it (shortfalls recorded as failures)."""

    pids: dict[str, int]

    async def run(self, seconds: float) -> None: ...
    async def verify(self) -> dict[str, Any]: ...


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
    samples: dict[str, list[tuple[float, float]]] = {}
    processes: list[Any] = []
    context = multiprocessing.get_context("fork")
    issuer = tokens.issuer(ttl=timedelta(hours=1))  # the gateway's load outlives five-minute tokens

    broker = PrivateBroker()
    loader: Any = None
    booting: asyncio.Task[PrivateBroker] | None = None
    try:
        async with (
            serving(tokens.jwks_app()) as auth_url,
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
                SMARTGYM_AUTH_URL=auth_url,
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
            await wait_answering(f"http://127.0.0.1:{upstream_port}/stats")
            regulars = [issuer.issue(f"member-{n}", [Role.CUSTOMER]) for n in range(50)]
            fresh = [issuer.issue(f"visitor-{n}", [Role.CUSTOMER]) for n in range(int(args.rate * seconds * 0.1) + 1)]
            pipe, end = context.Pipe()
            url = f"http://127.0.0.1:{gateway_port}/api/svc/ping"
            loader = context.Process(target=load_process, args=(url, args.rate, seconds, 0, regulars, fresh, 0.1, end))
            loader.start()
            end.close()  # the child's end stays open only in the child: its death closes the pipe

            # The other services' loads, each started, healthy and ready before any runs.
            loads: dict[str, Load] = {}
            loads["alerts"] = await stack.enter_async_context(alerts_load(
                databases=databases, broker_url=broker.url, namespace=namespace, scratch=scratch,
                devices=args.devices, push_rate=args.push_rate, crash_every_s=args.crash_every_s,
            ))  # fmt: skip
            loads["accounts"] = await stack.enter_async_context(accounts_load(
                databases=databases, broker_url=broker.url, namespace=namespace, scratch=scratch,
                members=args.members, rate=args.login_rate,
            ))  # fmt: skip
            loads["door"] = await stack.enter_async_context(door_load(
                databases=databases, scratch=scratch, members=args.door_members, face_rate=args.face_rate,
                pass_rate=args.pass_rate,
            ))  # fmt: skip
            loads["helpers"] = await stack.enter_async_context(helpers_load(
                databases=databases, broker_url=broker.url, namespace=namespace, scratch=scratch,
                task_rate=args.task_rate,
            ))  # fmt: skip
            loads["search"] = await stack.enter_async_context(search_load(
                broker_url=broker.url, namespace=namespace, scratch=scratch, branches=args.branches,
                query_rate=args.query_rate, review_rate=args.review_rate,
            ))  # fmt: skip
            pids = {"running": running.pid, "gateway": gateway.pid}
            for load in loads.values():
                pids.update(load.pids)

            def sample(at: float) -> None:
                for name, pid in pids.items():
                    samples.setdefault(name, []).append((at, rss_mib(pid)))

            people = People(database, args.runners, args.per_run)
            base = f"ws://127.0.0.1:{live_port}"
            started = time.monotonic()
            gateway_going = [False]

            def tick(at: float) -> None:
                if not gateway_going[0]:  # the gateway's load starts with the live stream
                    gateway_going[0] = True
                    start_load(pipe)
                sample(at)

            progress(f"{args.minutes:g} min of load on {', '.join(pids)}")
            others = asyncio.gather(*(load.run(seconds) for load in loads.values()))
            # A run whose live load fails stops the others before their services go.
            stack.callback(others.cancel)
            live = await drive(people.runner_urls(base), people.watcher_plan([base]), seconds=seconds,
                               pids={"running": running.pid}, on_tick=tick, tick_s=SAMPLE_S,
                               limit_s=60)  # fmt: skip
            await others
            outcomes = {name: await load.verify() for name, load in loads.items()}
            report = await asyncio.to_thread(load_report, pipe, sent=int(args.rate * seconds), what="gateway load")
            loader.join(10)
            elapsed = time.monotonic() - started
            async with httpx.AsyncClient() as client:
                seen = (await client.get(f"http://127.0.0.1:{upstream_port}/stats")).json()
    finally:
        # Killed, not asked: forked while this loop served the keys, it holds uvicorn's
        # SIGTERM handler, and a run that failed midway would wait for it at exit.
        if loader is not None and loader.is_alive():
            loader.kill()
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
        f"RSS under load ({args.minutes:g} min, {machine()})",
        ["service", "samples", "first MiB", "middle MiB", "end MiB", "growth middle -> end", "<= 5 %"],
        rows,
    )
    alerted, signed, entered = outcomes["alerts"], outcomes["accounts"], outcomes["door"]
    tasked, found = outcomes["helpers"], outcomes["search"]
    lost = found["reviews_unseen"]
    print("\n".join([
        "load, and what came of it:",
        f"  running: {args.runners} runners x {args.per_run} watchers; {live['watched'].distinct} positions delivered",
        f"  gateway: {args.rate:g} requests/s; {len(report['answered'])} answered in {elapsed:.0f} s",
        f"  monitoring: {args.devices} devices; {alerted['crashes_announced']} of {alerted['crashes']} crashes "
        f"announced, {alerted['crashes_recovered']} seen back; {alerted['false_alarms']} false alarms"
        + "".join(f" ({reason})" for reason in alerted["false_alarm_reasons"]),
        f"  notification: {args.push_rate:g} events/s; {alerted['pushes']} of {alerted['events_published']} pushed",
        f"  auth: {args.login_rate:g} attempts/s; {signed['sign_ins']} sign-ins and {signed['wrong_passwords']} "
        f"wrong passwords answered as they must, {signed['unexpected']} otherwise",
        f"  door: {args.face_rate:g} faces/s and {args.pass_rate:g} passes/s, {args.door_members} members; "
        f"{entered['face_entries']} face and {entered['pass_entries']} pass entries granted with "
        f"{entered['relay_frames']} relay frames, {entered['not_granted']} not granted",
        f"  helpers: {args.task_rate:g} tasks/s; {tasked['tasks']} submitted, {tasked['unjudged']} never judged, "
        f"{tasked['queue_pages']} queue pages, {tasked['approved']} approved, {tasked['unexpected']} unexpected "
        "answers",
        f"  search: {args.query_rate:g} queries/s and {args.review_rate:g} reviews/s over {args.branches} branches; "
        f"{found['queries']} answered, {found['reviews'] - lost} of {found['reviews']} reviews shown, "
        f"{found['unexpected']} unexpected answers",
    ]))  # fmt: skip
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
    figures["helper_tasks"] = tasked["tasks"]
    figures["search_queries"] = found["queries"]
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
    parser.add_argument("--task-rate", type=float, default=0.5, help="helpers: tasks submitted/s")
    parser.add_argument("--query-rate", type=float, default=5.0, help="search: queries/s")
    parser.add_argument("--review-rate", type=float, default=1.0, help="search: reviews posted/s")
    parser.add_argument("--branches", type=int, default=1000, help="search: branches in the index")
    parser.add_argument("--crash-every-s", type=float, default=30.0, help="monitoring: a device crashes this often")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
