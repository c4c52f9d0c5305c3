"""What ``perf_scaleout`` measures with on either path: CPU time from the threads'
nanosecond counters, the machine's busy share, the machine's own loopback round trip (the
floor of every latency), and the verdict against the aim."""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import time
from pathlib import Path
from typing import Any

from bench._common import (
    cpu_seconds,
    run_on_service_loop,
)
from tests.support.apps import free_port


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


AIM_RATIO = 1.25


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
