"""``perf_scaleout``'s gateway path: k gateways in front of one upstream, a load generator
process each, every set-up once a round in a rotated order; and the machine's own round
trip, the floor of the latencies."""

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
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench._common import (
    ROOT,
    STARTUP_S,
    cell,
    fail,
    figure,
    on_schedule,
    progress,
    spread_cells,
    stop_quietly,
    summary,
    table,
    wait_answering,
)
from bench._scaleout import (
    cpu_readings,
    idle_cpu_shares,
    machine_ticks,
    round_trip_floor,
    verdict,
    window_cpu_seconds,
)
from common.security import Role
from tests.support import tokens
from tests.support.apps import free_port
from tests.support.processes import clean_env, start, wait_healthy

UNSHARED = "1 memory://"  # the gateway set-up with per-process limits beside shared ones


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
        self.issuer = tokens.issuer(ttl=timedelta(hours=1))  # the windows outlive five-minute tokens
        self.regulars = [self.issuer.issue(f"member-{n}", [Role.CUSTOMER]) for n in range(50)]

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
        await wait_answering(f"http://127.0.0.1:{self.upstream_port}/stats")
        async with httpx.AsyncClient() as client:
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
