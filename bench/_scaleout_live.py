"""``perf_scaleout``'s live path: running replicas with the runners on the first and their
watchers on the others, so positions cross RabbitMQ; every set-up in rounds."""

from __future__ import annotations

import argparse
import contextlib
import statistics
from pathlib import Path
from typing import Any

from bench._broker import PrivateBroker
from bench._common import (
    ROOT,
    STARTUP_S,
    cpu_seconds,
    fail,
    figure,
    progress,
    shared_broker_namespace,
    spread_cells,
    summary,
    table,
)
from bench._live import drive
from bench._scaleout import idle_cpu_shares, verdict
from bench.running_live_fanout import People, judge, running_env
from tests.support.apps import free_port
from tests.support.processes import start, wait_listening

#: Point → watcher p99 the live fan-out is held to (ADR 0051); a position that crosses to
#: another replica lingers up to the batch window (100 ms) inside it.
LIVE_P99_BUDGET_MS = 200.0


def start_replicas(count: int, *, database: str, broker_url: str, auth_url: str, scratch: Path,
                   per_run: int, fanout_window_s: float | None = None) -> list[tuple[Any, int]]:  # fmt: skip
    """Start ``count`` running replicas (not waiting for them: see ``wait_replicas``)."""
    namespace = shared_broker_namespace()
    replicas = []
    for n in range(count):
        port, live_port = free_port(), free_port()
        env = running_env(database, namespace, auth_url, scratch, live_port, f"r{n + 1}", per_run, broker_url)
        if fanout_window_s is not None:
            env["SMARTGYM_RUNNING_FANOUT_WINDOW_S"] = str(fanout_window_s)
        log = scratch / f"running-{n + 1}.log"
        process = start(["serve", "running", "--port", str(port)], env=env, cwd=ROOT, log=log)
        replicas.append((process, live_port))
    return replicas


def wait_replicas(replicas: list[tuple[Any, int]], scratch: Path) -> None:
    for n, (process, live_port) in enumerate(replicas):
        # the live port answers once the fan-out is connected and the sockets are served
        wait_listening(live_port, process, scratch / f"running-{n + 1}.log", timeout=STARTUP_S)


async def idle_shares(replicas: list[tuple[Any, int]], broker: PrivateBroker, seconds: float = 5.0) -> dict[str, float]:
    """Each process's CPU share of one core with no load (timers, outbox polls): what an
    extra replica costs whatever it carries."""
    assert broker.pid is not None
    pids = {f"running r{n + 1}": process.pid for n, (process, _) in enumerate(replicas)} | {"broker": broker.pid}
    return await idle_cpu_shares(pids, seconds)


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
