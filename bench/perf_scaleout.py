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

    python bench/perf_scaleout.py [--replicas 1,2,3] [--runners 500] [--per-run 5] [--seconds 6] [--live-rounds 2]
        [--rate 200] [--gateway-seconds 8] [--gateway-rounds 3] [--no-reference] [--limits memory|redis]
        [--fanout-window 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import httpx

from bench._broker import PrivateBroker
from bench._common import (
    ROOT,
    STARTUP_S,
    cell,
    cpu_seconds,
    emit,
    ensure_services,
    fail,
    figure,
    machine,
    on_schedule,
    progress,
    run_on_service_loop,
    shared_broker_namespace,
    spread_cells,
    stop_quietly,
    summary,
    table,
)
from bench._live import drive
from bench.running_live_fanout import People, judge
from common.loops import configured_choice, resolved_name
from common.migrations import upgrade
from common.security import Role
from tests.support.apps import free_port, serving
from tests.support.infra import PG_ADMIN_URL, PostgresDatabases
from tests.support.processes import clean_env, start, wait_healthy
from tests.support.tokens import jwks_app

# -- live runs ------------------------------------------------------------------------------

UNSHARED = "1 memory://"  # the gateway set-up with per-process limits beside shared ones


def start_replicas(count: int, *, database: str, broker_url: str, auth_url: str, scratch: Path,
                   per_run: int, fanout_window_s: float | None = None) -> list[tuple[Any, int]]:  # fmt: skip
    """Start ``count`` running replicas (not waiting for them: see ``wait_replicas``)."""
    namespace = shared_broker_namespace()
    replicas = []
    for n in range(count):
        port, live_port = free_port(), free_port()
        env = clean_env(
            SMARTGYM_BROKER_URL=broker_url,
            SMARTGYM_BUS_NAMESPACE=namespace,
            SMARTGYM_AUTH_URL=auth_url,
            SMARTGYM_DATA_DIR=str(scratch),
            SMARTGYM_LOG_LEVEL="WARNING",
            SMARTGYM_RUNNING_DATABASE_URL=database,
            SMARTGYM_RUNNING_LIVE_PORT=str(live_port),
            SMARTGYM_RUNNING_REPLICA=f"r{n + 1}",
            SMARTGYM_RUNNING_WATCHERS_PER_RUN=str(max(500, per_run)),
            **({"SMARTGYM_RUNNING_FANOUT_WINDOW_S": str(fanout_window_s)} if fanout_window_s is not None else {}),
        )
        log = scratch / f"running-{n + 1}.log"
        process = start(["serve", "running", "--port", str(port)], env=env, cwd=ROOT, log=log)
        replicas.append((process, live_port))
    return replicas


def wait_replicas(replicas: list[tuple[Any, int]], scratch: Path) -> None:
    for n, (process, live_port) in enumerate(replicas):
        # the live port answers once the fan-out is connected and the sockets are served
        _wait_port(live_port, process, scratch / f"running-{n + 1}.log")


def _wait_port(port: int, process: Any, log: Path, timeout: float = STARTUP_S) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"replica exited:\n{log.read_text()[-2000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"replica's live port {port} did not open")


async def idle_shares(replicas: list[tuple[Any, int]], broker: PrivateBroker, seconds: float = 5.0) -> dict[str, float]:
    """Each process's CPU share of one core with no load (timers, outbox polls): what an
    extra replica costs whatever it carries."""
    assert broker.pid is not None
    pids = {f"running r{n + 1}": process.pid for n, (process, _) in enumerate(replicas)} | {"broker": broker.pid}
    return await idle_cpu_shares(pids, seconds)


async def idle_cpu_shares(pids: dict[str, int], seconds: float = 5.0) -> dict[str, float]:
    """Each process's CPU share of one core over ``seconds`` with no load.

    Read from the scheduler's nanosecond counters of the process's threads, not from the
    10 ms ticks of /proc/<pid>/stat: an idle gateway uses well under a tick in five
    seconds, so ticks read 0 % or 0.2 % by chance. (No thread starts or ends while idle,
    so summing the live threads loses nothing here.)"""
    before = {name: thread_cpu_seconds(pid) for name, pid in pids.items()}
    started = time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - started
    return {name: (thread_cpu_seconds(pid) - before[name]) / wall for name, pid in pids.items()}


def thread_cpu_seconds(pid: int) -> float:
    """CPU time of the live threads of a process, from /proc/<pid>/task/*/schedstat (ns)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def window_cpu_seconds(before: tuple[float, float], after: tuple[float, float]) -> float:
    """A process's CPU seconds in a window from two ``cpu_readings``: the threads'
    nanosecond counters when they agree with /proc/<pid>/stat's ticks (which are cut to
    10 ms each for user and system time: up to 0.02 s off, 3 % of a gateway's 0.7 s in an
    8 s window), the ticks when a thread ended in the window (its nanoseconds are gone
    from the task list, not from the ticks)."""
    precise, ticks = after[0] - before[0], after[1] - before[1]
    return precise if abs(precise - ticks) <= 0.021 else ticks


def cpu_readings(pid: int) -> tuple[float, float]:
    return thread_cpu_seconds(pid), cpu_seconds(pid)


def machine_ticks() -> tuple[int, int]:
    """(busy, all) CPU ticks of the whole machine so far (/proc/stat): how busy the machine
    was in a window, this benchmark's processes and everyone else's."""
    # user, nice, system, idle, iowait, irq, softirq, steal (guest time is inside user)
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


class DatabaseBackends:
    """CPU of the PostgreSQL backends connected to the benchmark's own database (the
    replicas' pools), between ``on_window("start")`` and ``on_window("end")``: the
    database's share of the run. A backend opened in the window counts in full, one closed
    in it is lost (pools keep theirs). The server's shared processes (WAL writer,
    checkpointer) also serve other clients of the machine and are not counted."""

    def __init__(self, database: str) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        from common.db import sync_url

        self._engine = create_engine(sync_url(database), poolclass=NullPool)
        self._start: dict[int, float] = {}
        self.cpu_s = 0.0
        self.backends = 0
        self.lost = 0

    def _now(self) -> dict[int, float]:
        from sqlalchemy import text

        with self._engine.connect() as connection:
            query = "select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()"
            pids = [int(row[0]) for row in connection.execute(text(query))]
        found = {}
        for pid in pids:
            with contextlib.suppress(OSError):
                found[pid] = cpu_seconds(pid)
        return found

    def on_window(self, edge: str) -> None:
        if edge == "start":
            self._start = self._now()
            return
        end = self._now()
        self.cpu_s = sum(value - self._start.get(pid, 0.0) for pid, value in end.items())
        self.backends = len(end)
        self.lost = len(set(self._start) - set(end))

    def close(self) -> None:
        self._engine.dispose()


async def live_runs(args: argparse.Namespace, database: str, replicas: list[tuple[Any, int]],
                    broker: PrivateBroker) -> list[dict[int, dict[str, Any]]]:  # fmt: skip
    """Every set-up once per round, the order reversed every other round (1, 2, 3 then
    3, 2, 1), so a machine that grows busier or quieter during the run weighs on every
    set-up alike; each round's ratios compare set-ups measured a few seconds apart."""
    rounds: list[dict[int, dict[str, Any]]] = []
    backends = DatabaseBackends(database)
    for number in range(args.live_rounds):
        results: dict[int, dict[str, Any]] = {}
        order = args.replicas if number % 2 == 0 else list(reversed(args.replicas))
        for count in order:
            results[count] = await live_setup(args, database, replicas, broker, backends, count)
        rounds.append(dict(sorted(results.items())))
    backends.close()
    return rounds


async def live_setup(args: argparse.Namespace, database: str, replicas: list[tuple[Any, int]], broker: PrivateBroker,
                     backends: DatabaseBackends, count: int) -> dict[str, Any]:  # fmt: skip
    used = replicas[:count]
    people = People(database, args.runners, args.per_run)
    bases = [f"ws://127.0.0.1:{live_port}" for _, live_port in used]
    watcher_bases = bases[1:] or bases
    pids = {f"running r{n + 1}": process.pid for n, (process, _) in enumerate(used)}
    assert broker.pid is not None
    pids["broker"] = broker.pid
    progress(f"live runs on {count} replica(s)")
    result = await drive(people.runner_urls(bases[0]), people.watcher_plan(watcher_bases),
                         seconds=args.seconds, pids=pids, on_window=backends.on_window)  # fmt: skip
    result["cpu_s"]["postgres"] = backends.cpu_s
    result["backends"] = (backends.backends, backends.lost)
    refused = result["points_sent"] - result["points_accepted"]
    result["refused"] = refused
    if refused:
        fail(f"live, {count} replica(s): {refused} of {result['points_sent']} points refused by the replica")
    judge(f"live, {count} replica(s)", result)
    # Each set-up's figure as soon as it is known (a killed run keeps it).
    cost = sum(result["cpu_s"].values()) / max(1, result["watched"].distinct) * 1e6
    progress(f"live, {count} replica(s): {result['watched'].distinct}/{result['expected']} delivered, "
             f"{cost:.1f} CPU µs per delivery over {result['cpu_s']}")  # fmt: skip
    return result


# -- gateway -------------------------------------------------------------------------------


def load_process(url: str, rate: float, seconds: float, offset: int, token_list: list[str], fresh: list[str],
                 new_share: float, pipe: Any, phase_s: float = 0.0) -> None:  # fmt: skip
    """Open-loop GETs at ``rate``/s, each with a unique id, timed from its scheduled send;
    the first ``phase_s`` after the go. How late each left its schedule (the generator's
    own wake, part of every latency) is reported beside, and each latency from its send.

    The schedule is kept by ``bench._common.on_schedule`` (a thread on nanosecond timers)."""

    async def main() -> None:
        latencies: list[float] = []
        from_send: list[float] = []
        lateness: list[float] = []
        answered: list[int] = []
        failed = 0
        total = int(rate * seconds)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
            tasks: list[asyncio.Task[None]] = []

            async def one(scheduled: float, sent: float, ident: int, token: str) -> None:
                nonlocal failed
                try:
                    async with session.get(f"{url}?id={ident}", headers={"authorization": f"Bearer {token}"}) as r:
                        await r.read()
                        ok = r.status == 200
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    answered_at = time.perf_counter()
                    latencies.append((answered_at - scheduled) * 1000)
                    from_send.append((answered_at - sent) * 1000)
                    answered.append(ident)
                else:
                    failed += 1

            def send(n: int, scheduled: float) -> None:
                sent = time.perf_counter()
                lateness.append((sent - scheduled) * 1000)
                if new_share and int((n + 1) * new_share) != int(n * new_share):
                    token = fresh[int(n * new_share) % len(fresh)]
                else:
                    token = token_list[n % len(token_list)]
                tasks.append(asyncio.create_task(one(scheduled, sent, offset + n, token)))

            pipe.recv()  # go
            # An error in a send ends the generator: its closed pipe is the failure.
            await on_schedule(send, rate=rate, count=total, start_at=time.perf_counter() + phase_s)
            await asyncio.gather(*tasks)
        pipe.send({"latencies": latencies, "from_send": from_send, "lateness": lateness, "answered": answered,
                   "failed": failed, "sent": total})  # fmt: skip

    asyncio.run(main())


def load_report(pipe: Any, *, sent: int, what: str) -> dict[str, Any]:
    """A load generator's report. One that died reports nothing and its pipe closes (the
    caller closed its copy of the child's end): a failure, with every request it was to
    send counted as unanswered, instead of a wait that never ends."""
    try:
        report: dict[str, Any] = pipe.recv()
    except (EOFError, OSError):
        fail(f"{what}: the load generator died before it reported")
        return {"latencies": [], "from_send": [], "lateness": [], "answered": [], "failed": sent, "sent": sent}
    return report


def start_load(pipe: Any) -> None:
    """Tells a load generator to go; one already dead is reported by ``load_report``."""
    with contextlib.suppress(OSError):
        pipe.send("go")


class GatewaySide:
    """An upstream, its keys and ``count`` gateways in front of it, started together."""

    def __init__(self, count: int, scratch: Path, *, limits: str = "memory") -> None:
        from fastapi import FastAPI

        from common.security import SigningKey, TokenIssuer, jwks_document

        key = SigningKey.generate()
        self.issuer = TokenIssuer(key, issuer="smartgym-auth", audience="smartgym", ttl=timedelta(hours=1))
        self.regulars = [self.issuer.issue(f"member-{n}", [Role.CUSTOMER]) for n in range(50)]
        self.keys_app = FastAPI()

        @self.keys_app.get("/.well-known/jwks.json")
        async def jwks() -> dict[str, object]:
            return jwks_document([key])

        @self.keys_app.get("/revocations")
        async def revocations() -> list[object]:
            return []  # as auth answers with none in force (see bench._common.jwks_app)

        self.count = count
        self.scratch = scratch
        self.upstream_port = free_port()
        self.upstream: Any = None
        self.limits = limits
        self.redis: Any = None
        self.redis_port = free_port()
        # With shared limits, one more gateway with per-process limits: what sharing them
        # costs, measured in the same run.
        self.unshared: tuple[Any, int, Path] | None = None
        self.gateways: list[tuple[Any, int, Path]] = []

    def start(self, auth_url: str) -> None:
        self.upstream = subprocess.Popen([sys.executable, "bench/_upstream.py", str(self.upstream_port)], cwd=ROOT,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        storage = "memory://"
        if self.limits == "redis":
            self.redis = subprocess.Popen(["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                           "--save", "", "--appendonly", "no"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            storage = f"redis://127.0.0.1:{self.redis_port}/0"
        routes = [{"prefix": "/api/svc", "service": "svc", "upstreams": [f"http://127.0.0.1:{self.upstream_port}"],
                   "rate_limit": "1000000/second"}]  # fmt: skip
        storages = [storage] * self.count + (["memory://"] if self.redis is not None else [])
        for n, each in enumerate(storages):
            port = free_port()
            env = clean_env(
                SMARTGYM_GATEWAY_ROUTES=json.dumps(routes),
                SMARTGYM_AUTH_URL=auth_url,
                SMARTGYM_GATEWAY_IP_RATE_LIMIT="1000000/second",
                SMARTGYM_GATEWAY_RATE_LIMIT_STORAGE=each,
                SMARTGYM_LOG_LEVEL="WARNING",
                SMARTGYM_DATA_DIR=str(self.scratch),
            )
            log = self.scratch / f"gateway-{n + 1}.log"
            process = start(["serve", "gateway", "--port", str(port)], env=env, cwd=ROOT, log=log)
            if n < self.count:
                self.gateways.append((process, port, log))
            else:
                self.unshared = (process, port, log)

    async def wait(self) -> None:
        for process, port, log in self.all_gateways():
            await asyncio.to_thread(wait_healthy, f"http://127.0.0.1:{port}", process, log, STARTUP_S)
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                try:
                    await client.get(f"http://127.0.0.1:{self.upstream_port}/stats")
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
            for _, port, _ in self.all_gateways():  # warm: JWKS fetched, pools open (not counted)
                for token in self.regulars[:5]:
                    await client.get(f"http://127.0.0.1:{port}/api/svc/ping",
                                     headers={"authorization": f"Bearer {token}"})  # fmt: skip

    def all_gateways(self) -> list[tuple[Any, int, Path]]:
        return self.gateways + ([self.unshared] if self.unshared is not None else [])

    def stop(self) -> None:
        for process, _, _ in self.all_gateways():
            stop_quietly(process)
        for helper in (self.upstream, self.redis):
            if helper is not None:
                helper.terminate()
                helper.wait(30)

    def helper_pids(self) -> dict[str, int]:
        """The processes every set-up shares: the upstream, and Redis when limits are shared."""
        pids = {"upstream": self.upstream.pid}
        if self.redis is not None:
            pids["redis"] = self.redis.pid
        return pids


def gateway_setups(args: argparse.Namespace) -> list[tuple[str, int, float]]:
    """(label, replicas, total rate) of each gateway set-up. With more than one replica
    count, a reference set-up too: one replica at the per-replica rate of the most
    replicas. A process serving fewer requests a second pays more CPU per request on these
    machines (a plain function called 67 times a second costs ~25 % more a call than
    called 200 times: each wake finds its caches cold), and the reference shows how much of
    the scale-out cost that is for the gateway. It is no exact split: with one load
    generator and one replica the machine is quieter, and its upstream less loaded, than
    with three."""
    setups = [(f"{count}", count, args.rate) for count in args.replicas]
    if args.limits == "redis":
        setups.append((UNSHARED, 1, args.rate))
    most = max(args.replicas)
    if args.reference and most > 1:
        setups.append((f"1 at {args.rate / most:.0f}/s", 1, args.rate / most))
    return setups


async def gateway_window(args: argparse.Namespace, side: GatewaySide, *, label: str, count: int, rate: float,
                         round_no: int, client: httpx.AsyncClient) -> dict[str, Any]:  # fmt: skip
    """One set-up for ``args.gateway_seconds``: ``count`` gateways, one load generator each."""
    context = multiprocessing.get_context("fork")
    upstream_url = f"http://127.0.0.1:{side.upstream_port}"
    gateways = [side.unshared] if label == UNSHARED and side.unshared is not None else side.gateways[:count]
    await client.post(f"{upstream_url}/reset")
    per = rate / count
    fresh_per = int(per * args.gateway_seconds * args.new_token_share) + 1
    # The regular tokens are new in every window, so each window starts with the same
    # verification caches whatever ran before it (a token stays cached 30 s): each replica
    # verifies each regular once in the window, which is what scale-out really costs.
    regulars = [side.issuer.issue(f"member-{round_no}-{label}-{n}", [Role.CUSTOMER]) for n in range(50)]
    loaders = []
    for n, (_, port, _) in enumerate(gateways):
        fresh = [side.issuer.issue(f"visitor-{round_no}-{label}-{n}-{m}", [Role.CUSTOMER]) for m in range(fresh_per)]
        pipe, end = context.Pipe()
        # The generators take turns (generator n starts n/rate s after the go): together
        # they send one request every 1/rate s, as one generator does for one replica.
        # Started in step, they sent k requests at once every k/rate s, so on this
        # 2-core machine the requests to 3 replicas queued for a core and the 3-replica
        # latency paid for the burst, not for the replicas.
        loader = context.Process(target=load_process, args=(
            f"http://127.0.0.1:{port}/api/svc/ping", per, args.gateway_seconds, n * 10_000_000,
            regulars, fresh, args.new_token_share, end, n / rate))  # fmt: skip
        loader.start()
        end.close()  # the child's end stays open only in the child: its death closes the pipe
        loaders.append((loader, pipe))
    pids = {f"gateway g{n + 1}": process.pid for n, (process, _, _) in enumerate(gateways)}
    pids.update(side.helper_pids())
    if label == UNSHARED:
        pids.pop("redis", None)  # a gateway keeping its limits in memory has no Redis
    progress(f"gateway, round {round_no}: {rate:.0f}/s over {count} replica(s)")
    before = {name: cpu_readings(pid) for name, pid in pids.items()}
    busy_before = machine_ticks()
    wall = time.monotonic()
    for _, pipe in loaders:
        start_load(pipe)
    what = f"gateway, round {round_no}, set-up {label}"
    expected = int(per * args.gateway_seconds)
    reports = [await asyncio.to_thread(load_report, pipe, sent=expected, what=what) for _, pipe in loaders]
    wall = time.monotonic() - wall
    cpu = {name: window_cpu_seconds(before[name], cpu_readings(pid)) for name, pid in pids.items()}
    busy_after = machine_ticks()
    for loader, _ in loaders:
        loader.join(10)
    seen = (await client.get(f"{upstream_url}/stats")).json()
    sent = sum(report["sent"] for report in reports)
    answered = [ident for report in reports for ident in report["answered"]]
    if len(set(answered)) < sent:
        fail(f"{what}: {sent - len(set(answered))} of {sent} requests not answered 200")
    if seen["requests"] != seen["distinct"]:
        fail(f"{what}: upstream saw {seen['requests'] - seen['distinct']} requests twice")
    if seen["distinct"] != sent:
        fail(f"{what}: upstream saw {seen['distinct']} distinct of {sent} sent")
    delivered = len(set(answered))
    progress(
        f"{what}: {delivered}/{sent} answered, {sum(cpu.values()) / max(1, delivered) * 1e6:.0f} CPU µs per request"
    )
    return {
        "round": round_no,
        "label": label,
        "count": count,
        "rate": rate,
        "sent": sent,
        "failed": sum(report["failed"] for report in reports),
        "delivered": delivered,
        "latencies": [value for report in reports for value in report["latencies"]],
        "lateness": [value for report in reports for value in report["lateness"]],
        "from_send": [value for report in reports for value in report["from_send"]],
        "cpu_s": cpu,
        "wall_s": wall,
        "load": os.getloadavg()[0],
        "machine_busy": (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1]),
    }


# -- the machine's own floor ----------------------------------------------------------------

ROUND_TRIP_BYTES = 200  # about a request's head


def _echo_process(port: int, ready: Any) -> None:
    async def main() -> None:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(4096):
                writer.write(data)

        server = await asyncio.start_server(echo, "127.0.0.1", port)
        ready.send("ready")
        await server.serve_forever()

    run_on_service_loop(main())


def _round_trip_process(port: int, plan: list[tuple[float, float]], pipe: Any) -> None:
    """Round trips to the echo process paced at each (rate, seconds) of ``plan``, timed
    from the write (not from the schedule: the client's own timer is not the machine's
    round trip): what the machine alone adds to an exchange at that rate."""

    async def main() -> list[list[float]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        payload = b"x" * ROUND_TRIP_BYTES
        measured = []
        for rate, seconds in plan:
            times = []
            start = time.perf_counter()
            for n in range(int(rate * seconds)):
                scheduled = start + n / rate
                if (wait := scheduled - time.perf_counter()) > 0:
                    await asyncio.sleep(wait)
                sent = time.perf_counter()
                writer.write(payload)
                await reader.readexactly(ROUND_TRIP_BYTES)
                times.append((time.perf_counter() - sent) * 1e3)
            measured.append(times)
        writer.close()
        return measured

    pipe.send(run_on_service_loop(main()))


def round_trip_floor(rates: list[float], *, seconds: float = 5.0, rounds: int = 2) -> dict[float, list[float]]:
    """Loopback TCP round trips between two processes on the services' loop, each rate in
    turn for ``rounds`` rounds, order alternated; ms by rate: what the machine alone adds
    to an exchange at each rate (a process woken less often may find its CPU halted and
    its caches cold), beneath the gateways' latencies at the same rates."""
    context = multiprocessing.get_context("fork")
    port = free_port()
    ready, ready_end = context.Pipe()
    server = context.Process(target=_echo_process, args=(port, ready_end), daemon=True)
    server.start()
    ready_end.close()  # each child's end stays open only in the child: its death closes the pipe
    try:
        ready.recv()
        plan = [(rate, seconds) for n in range(rounds) for rate in (rates if n % 2 == 0 else rates[::-1])]
        result, result_end = context.Pipe()
        client = context.Process(target=_round_trip_process, args=(port, plan, result_end), daemon=True)
        client.start()
        result_end.close()
        measured = result.recv()
        client.join(10)
    finally:
        server.kill()
        server.join(10)
    floor: dict[float, list[float]] = {rate: [] for rate in rates}
    for (rate, _), times in zip(plan, measured, strict=True):
        floor[rate].extend(times)
    return floor


async def gateway_runs(args: argparse.Namespace, side: GatewaySide) -> dict[str, Any]:
    """Every set-up once a round, in an order rotated each round: a drift in the machine's
    load (other jobs start and stop) falls on every set-up alike instead of on the last."""
    idle_pids = {f"gateway g{n + 1}": process.pid for n, (process, _, _) in enumerate(side.gateways)}
    idle_pids.update(side.helper_pids())
    idle = await idle_cpu_shares(idle_pids, seconds=args.idle_seconds)
    setups = gateway_setups(args)
    windows = []
    async with httpx.AsyncClient() as client:
        for round_no in range(1, args.gateway_rounds + 1):
            shift = (round_no - 1) % len(setups)
            for label, count, rate in setups[shift:] + setups[:shift]:
                windows.append(await gateway_window(args, side, label=label, count=count, rate=rate,
                                                    round_no=round_no, client=client))  # fmt: skip
    rates = sorted({rate / count for _, count, rate in setups}, reverse=True)
    progress("the machine's round trip at " + " and ".join(f"{rate:.0f}/s" for rate in rates))
    try:
        floor = await asyncio.to_thread(round_trip_floor, rates)
    except (EOFError, OSError) as exc:  # the windows measured are still reported
        fail(f"the machine's round trip was not measured: {exc!r}")
        floor = {}
    return {"windows": windows, "idle_share": idle, "setups": setups, "round_trip_floor": floor}


# -- the run -------------------------------------------------------------------------------


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
        async with serving(jwks_app()) as auth_url, serving(side.keys_app) as gateway_auth_url:
            # Everything starts at once (the broker node's boot is the longest part).
            progress("starting a private RabbitMQ node, the gateways and their upstream")
            booting = asyncio.create_task(asyncio.to_thread(broker.start)) if not args.skip_live else None
            if not args.skip_gateway:
                side.start(gateway_auth_url)
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


def gateway_report(args: argparse.Namespace, gateway: dict[str, Any], figures: dict[str, Any]) -> None:
    windows: list[dict[str, Any]] = gateway["windows"]

    def cost_of(window: dict[str, Any]) -> float:
        return sum(window["cpu_s"].values()) / max(1, window["delivered"])

    def gateways_cost_of(window: dict[str, Any]) -> float:
        spent = sum(value for name, value in window["cpu_s"].items() if name.startswith("gateway"))
        return spent / max(1, window["delivered"])

    rows = []
    for window in windows:
        lat = summary(window["latencies"])
        rows.append([
            window["round"], window["label"], f"{window['delivered']}/{window['sent']}", window["failed"],
            *spread_cells(lat, ("p50", "p99"), digits=2),
            "; ".join(f"{name} {value:.2f}" for name, value in window["cpu_s"].items()),
            f"{cost_of(window) * 1e6:.0f}", f"{gateways_cost_of(window) * 1e6:.0f}", f"{window['load']:.2f}",
            f"{window['machine_busy']:.0%}",
        ])  # fmt: skip
    table(
        f"Gateway ({args.limits} rate limits), every window: {args.rate:.0f} requests/s in total for "
        f"{args.gateway_seconds:.0f} s unless the "
        f"set-up says otherwise, timed from the scheduled send, {args.new_token_share:.0%} first-seen tokens (ms); "
        "load = 1-minute load average at the window's end, busy = the whole machine's CPU in the window",
        ["round", "replicas", "answered/sent", "failed", "n", "p50", "p99", "CPU s by process", "CPU µs/request",
         "of which gateways", "load", "busy"],
        rows,
    )  # fmt: skip
    # Per set-up: the median window's cost (a window disturbed by other jobs moves it
    # little), the p99 over every request of the set-up's windows.
    by_label: dict[str, list[dict[str, Any]]] = {}
    for window in windows:
        by_label.setdefault(window["label"], []).append(window)
    gcost: dict[int, float] = {}
    gp99: dict[int, float] = {}
    gp99_from_send: dict[int, float] = {}
    median_cost: dict[str, float] = {}
    rows = []
    for label, _count, _rate in gateway["setups"]:
        costs = [cost_of(window) for window in by_label[label]]
        median_cost[label] = statistics.median(costs)
        lat = summary([value for window in by_label[label] for value in window["latencies"]])
        late = summary([value for window in by_label[label] for value in window["lateness"]])
        from_send = summary([value for window in by_label[label] for value in window["from_send"]])
        rows.append([
            label, len(costs), f"{median_cost[label] * 1e6:.0f}", f"{min(costs) * 1e6:.0f}-{max(costs) * 1e6:.0f}",
            *spread_cells(lat, digits=2), cell(late, "p50", 2), cell(late, "p99", 2), cell(from_send, "p99", 2),
            f"{1 / median_cost[label]:,.0f}",
        ])  # fmt: skip
        if label.isdigit():
            count = int(label)
            gcost[count], gp99[count], gp99_from_send[count] = median_cost[label], lat["p99"], from_send["p99"]
            figures[f"gateway_{count}_cpu_us_per_request"] = round(median_cost[label] * 1e6, 1)
            figures[f"gateway_{count}_p99_ms"] = figure(lat["p99"], 2)
            figures[f"gateway_{count}_n"] = int(lat["n"])
            figures[f"gateway_{count}_send_lateness_p99_ms"] = figure(late["p99"], 2)
            figures[f"gateway_{count}_p99_from_send_ms"] = figure(from_send["p99"], 2)
            figures[f"gateway_{count}_requests_per_core_s"] = round(1 / median_cost[label])
    table(
        f"Gateway, per set-up over {args.gateway_rounds} round(s): the median window's CPU µs per request "
        "(all processes), the spread of the windows, latency over all their requests (ms), how late the "
        "load generators sent them (ms, inside the latency: their own wake) and the p99 timed from when the "
        "generator's loop took each request up",
        ["replicas", "windows", "CPU µs/request (median)", "min-max", "n", "p50", "p95", "p99",
         "sent late p50", "sent late p99", "p99 from send", "requests per core-second"],
        rows,
    )  # fmt: skip
    base = min(gcost)
    for count in gcost:
        if count == base:
            continue
        figures[f"gateway_cost_ratio_{count}_replicas"] = round(gcost[count] / gcost[base], 3)
        figures[f"gateway_p99_ratio_{count}_replicas"] = figure(gp99[count] / gp99[base], 3)
        figures[f"gateway_p99_from_send_ratio_{count}_replicas"] = figure(
            gp99_from_send[count] / gp99_from_send[base], 3
        )
        # The ratio within each round: both windows minutes apart at most, under the same
        # outside load.
        by_round = {w["round"]: cost_of(w) for w in by_label[str(count)]}
        ratios = [by_round[w["round"]] / cost_of(w) for w in by_label[str(base)] if w["round"] in by_round]
        figures[f"gateway_cost_ratio_{count}_replicas_by_round"] = [round(ratio, 3) for ratio in ratios]
        print(f"cost ratio {count} replicas / {base}, round by round: " + ", ".join(f"{r:.2f}" for r in ratios))
    most = max(gcost)
    reference = next((label for label, _, _ in gateway["setups"] if " at " in label), None)
    if reference is not None and most != base:
        rate_part = median_cost[reference] / gcost[base]
        replica_part = gcost[most] / median_cost[reference]
        figures["gateway_reference_cpu_us_per_request"] = round(median_cost[reference] * 1e6, 1)
        figures["gateway_per_process_rate_ratio"] = round(rate_part, 3)
        figures[f"gateway_{most}_replicas_against_reference_ratio"] = round(replica_part, 3)
        slow = reference.split(" at ")[1]
        print(f"one replica serving {slow} instead of {args.rate:.0f}/s: {rate_part:.2f}x the CPU "
              f"per request (a process is dearer per request the less it is loaded); {most} replicas at that rate "
              f"each: {replica_part:.2f}x that one")  # fmt: skip
        reference_p99 = summary([value for window in by_label[reference] for value in window["latencies"]])["p99"]
        if not math.isnan(reference_p99):
            figures["gateway_reference_p99_ms"] = figure(reference_p99, 2)
            figures["gateway_p99_per_process_rate_ratio"] = figure(reference_p99 / gp99[base], 3)
            figures[f"gateway_{most}_replicas_p99_against_reference_ratio"] = figure(gp99[most] / reference_p99, 3)
            print(f"p99: one replica serving {slow} {reference_p99:.2f} ms, {reference_p99 / gp99[base]:.2f}x its p99 "
                  f"at {args.rate:.0f}/s; {most} replicas at that rate each: {gp99[most] / reference_p99:.2f}x "
                  "that one")  # fmt: skip
    floor: dict[float, list[float]] = gateway.get("round_trip_floor", {})
    if floor:
        spreads = {rate: summary(times) for rate, times in floor.items()}
        table(
            "The machine alone: a loopback TCP round trip between two processes, paced at each per-process rate "
            "above, timed from the write (ms)",
            ["rate", "n", "p50", "p95", "p99"],
            [[f"{rate:.0f}/s", *spread_cells(spread, digits=3)] for rate, spread in spreads.items()],
        )
        for rate, spread in spreads.items():
            figures[f"round_trip_{rate:.0f}_per_s_p50_ms"] = figure(spread["p50"], 3)
            figures[f"round_trip_{rate:.0f}_per_s_p99_ms"] = figure(spread["p99"], 3)
            figures[f"round_trip_{rate:.0f}_per_s_n"] = int(spread["n"])
    idle = gateway["idle_share"]
    print(f"idle CPU share of one core ({args.idle_seconds:.0f} s, no load): "
          + "; ".join(f"{name} {share:.2%}" for name, share in idle.items()))  # fmt: skip
    gmarginal: dict[int, float] = {}
    for count in gcost:
        busy = []
        for window in by_label[str(count)]:
            spent = sum(max(0.0, value - idle.get(name, 0.0) * window["wall_s"])
                        for name, value in window["cpu_s"].items())  # fmt: skip
            busy.append(spent / max(1, window["delivered"]))
        gmarginal[count] = statistics.median(busy)
    print("CPU µs/request without each process's idle share (median window): "
          + "; ".join(f"{count} replica(s) {value * 1e6:.1f}" for count, value in gmarginal.items()))  # fmt: skip
    for count in gmarginal:
        if count != base and gmarginal[base] > 0:
            figures[f"gateway_marginal_cost_ratio_{count}_replicas"] = round(gmarginal[count] / gmarginal[base], 3)
    figures["gateway_rounds"] = args.gateway_rounds
    figures["gateway_rate_limits"] = args.limits
    if UNSHARED in median_cost and 1 in gcost:
        figures["gateway_1_memory_limits_cpu_us_per_request"] = round(median_cost[UNSHARED] * 1e6, 1)
        figures["gateway_shared_limits_cost_ratio_1_replica"] = round(gcost[1] / median_cost[UNSHARED], 3)
        shared_ratio = figures["gateway_shared_limits_cost_ratio_1_replica"]
        print(f"one replica sharing its limits through Redis against one keeping them in memory: "
              f"{shared_ratio:.2f}x the CPU per request (Redis counted)")  # fmt: skip
    if args.limits == "redis" and f"gateway_cost_ratio_{most}_replicas" in figures:
        figures[f"gateway_cost_ratio_{most}_replicas_shared_limits"] = figures[f"gateway_cost_ratio_{most}_replicas"]
    verdict("gateway", gcost, gp99)
    from_send_ratio = gp99_from_send[most] / gp99_from_send[base]
    if most != base and not math.isnan(from_send_ratio):
        print(f"gateway p99 timed from when each generator's loop took its request up instead of its schedule "
              f"(the generators' timer lateness left out): {most} replicas {from_send_ratio:.2f}x one")  # fmt: skip


def report_live(args: argparse.Namespace, live: list[dict[int, dict[str, Any]]], figures: dict[str, Any]) -> None:
    """One row per round and set-up; the headline cost of a set-up is its median over the
    rounds, its p99 is over every round's deliveries, and a ratio is the median of the
    rounds' own ratios (each against the single replica measured in the same round)."""
    rows = []
    costs: dict[int, list[float]] = {}
    marginals: dict[int, list[float]] = {}
    latencies: dict[int, list[float]] = {}
    for number, results in enumerate(live, 1):
        for count, result in results.items():
            delivered = result["watched"].distinct
            one = sum(result["cpu_s"].values()) / max(1, delivered)
            idle = result.get("idle_share", {})
            # Without each process's idle CPU: what carrying the messages across costs,
            # apart from what an extra process costs by existing.
            busy = sum(max(0.0, value - idle.get(name, 0.0) * result["wall_s"])
                       for name, value in result["cpu_s"].items())  # fmt: skip
            costs.setdefault(count, []).append(one)
            marginals.setdefault(count, []).append(busy / max(1, delivered))
            latencies.setdefault(count, []).extend(result["watched"].latencies_ms)
            rows.append([
                number, count, f"{delivered}/{result['expected']}", result["watched"].repeats, result["refused"],
                f"{delivered / result['wall_s']:.0f}", *spread_cells(summary(result["watched"].latencies_ms)),
                "; ".join(f"{name} {value:.2f}" for name, value in result["cpu_s"].items()),
                f"{one * 1e6:.1f}", f"{1 / one:,.0f}",
            ])  # fmt: skip
    table(
        f"Live runs: {args.runners} runners x {args.per_run} watchers, {args.seconds:.0f} s per set-up, "
        f"{len(live)} round(s); runners on r1, watchers on the others (point -> watcher ms)",
        ["round", "replicas", "delivered/expected", "repeats", "refused", "deliveries/s", "n", "p50", "p95", "p99",
         "CPU s by process", "CPU µs/delivery (all)", "deliveries per core-second"],
        rows,
    )  # fmt: skip
    base = min(costs)
    cost: dict[int, float] = {count: statistics.median(values) for count, values in costs.items()}
    p99: dict[int, float] = {}
    for count, values in latencies.items():
        lat = summary(values)
        p99[count] = lat["p99"]
        figures[f"live_{count}_cpu_us_per_delivery"] = round(cost[count] * 1e6, 1)
        figures[f"live_{count}_p99_ms"] = figure(lat["p99"], 1)
        figures[f"live_{count}_n"] = int(lat["n"])
        figures[f"live_{count}_deliveries_per_core_s"] = round(1 / cost[count])
    ratio: dict[int, float] = {}
    for count in costs:
        if count == base:
            continue
        ratios = [mine / theirs for mine, theirs in zip(costs[count], costs[base], strict=True)]
        ratio[count] = statistics.median(ratios)
        figures[f"live_cost_ratio_{count}_replicas"] = round(ratio[count], 3)
        figures[f"live_cost_ratio_{count}_replicas_by_round"] = [round(value, 3) for value in ratios]
        figures[f"live_p99_ratio_{count}_replicas"] = figure(p99[count] / p99[base], 3)
        marginal_ratios = [mine / theirs for mine, theirs in zip(marginals[count], marginals[base], strict=True)]
        figures[f"live_marginal_cost_ratio_{count}_replicas"] = round(statistics.median(marginal_ratios), 3)
        print(f"live, {count} replicas against {base}, cost ratio by round: "
              + ", ".join(f"{value:.2f}" for value in ratios) + f" (median {ratio[count]:.2f})")  # fmt: skip
    backends = next(iter(live[0].values()))["backends"]
    print(f"postgres: the backends of the benchmark's database ({backends[0]} at the end of the first set-up, "
          f"{backends[1]} closed in its window and not counted)")  # fmt: skip
    verdict("live", {base: 1.0, **ratio}, p99, p99_budget_ms=LIVE_P99_BUDGET_MS)
    shares = next(iter(live[0].values())).get("idle_share", {})
    idle_line = "; ".join(f"{name} {share:.1%}" for name, share in shares.items())
    print(f"idle CPU share of one core (5 s, no load): {idle_line}")
    marginal_line = "; ".join(f"{count} replica(s) {statistics.median(values) * 1e6:.1f}"
                              for count, values in marginals.items())  # fmt: skip
    print(f"CPU µs/delivery without each process's idle share (median over rounds): {marginal_line}")


AIM_RATIO = 1.25
#: Point → watcher p99 the live fan-out is held to (ADR 0051); a position that crosses to
#: another replica lingers up to the batch window (100 ms) inside it.
LIVE_P99_BUDGET_MS = 200.0


def verdict(what: str, cost: dict[int, float], p99: dict[int, float], *, p99_budget_ms: float | None = None) -> None:
    """The aim on one line: the most replicas' cost per message within 1.25x of one
    replica's, and the p99 within the path's latency budget where it has one (the ratio
    of the p99s is printed beside it), else within 1.25x of one replica's."""
    base, most = min(cost), max(cost)
    if most == base:
        return
    cost_ratio = cost[most] / cost[base]
    p99_ratio = p99[most] / p99[base]
    cost_line = f"cost {cost_ratio:.2f}x ({'met' if cost_ratio <= AIM_RATIO else 'NOT met'})"
    if math.isnan(p99_ratio):
        p99_line = "p99 -"
    elif p99_budget_ms is not None:
        within = "met" if p99[most] <= p99_budget_ms else "NOT met"
        p99_line = (f"p99 {p99[most]:.1f} ms against the {p99_budget_ms:.0f} ms budget ({within}; {p99_ratio:.2f}x "
                    "one replica's, which crosses no broker and waits for no batch)")  # fmt: skip
    else:
        p99_line = f"p99 {p99_ratio:.2f}x ({'met' if p99_ratio <= AIM_RATIO else 'NOT met'})"
    print(f"{what}: {most} replicas against {base}, aim <= {AIM_RATIO}x: {cost_line}; {p99_line}")


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
