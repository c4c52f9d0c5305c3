"""Shared helpers of the benchmark scripts (not a benchmark itself)."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
_STARTED = time.monotonic()
#: How long a benchmark waits for a service it started to report healthy: generous,
#: since a machine shared with other jobs starts Python services slowly.
STARTUP_S = 180.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def shared_broker_namespace(url: str = "amqp://guest:guest@127.0.0.1:5672/") -> str:
    """A fresh bus namespace whose queues on the shared broker are deleted when the
    benchmark exits, however it ends: quorum queues left behind by hundreds of runs hold
    segment files until the broker runs out of file handles and stops answering."""
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    atexit.register(_delete_namespace_queues, url, namespace)
    return namespace


def _delete_namespace_queues(url: str, namespace: str) -> None:
    from tests.support.amqp import delete_queues_with_prefixes

    # A service process still stopping may declare a queue again: a few passes.
    for _ in range(5):
        with contextlib.suppress(Exception):  # housekeeping: never changes a run's outcome
            if asyncio.run(delete_queues_with_prefixes(url, (f"{namespace}.",))) == 0:
                return
        time.sleep(1.0)


def run_on_service_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a benchmark's own coroutine on the event loop the services run on
    (``SMARTGYM_EVENT_LOOP``): a baseline measured in the benchmark's process (a bare
    library server, a client alone) is then held to the same loop as what it is compared
    with."""
    from common.loops import configured_choice, run

    return run(main, choice=configured_choice())


def ensure_services() -> None:
    """Start RabbitMQ/PostgreSQL the way the test command does, if they are not up."""
    subprocess.run([str(ROOT / "scripts" / "services")], check=True)


#: Below this many samples a 99th percentile is the maximum of a small set under another
#: name: it is refused, not printed.
MIN_P99_SAMPLES = 100
NO_P99 = "n<100: no p99"

_failures: list[str] = []


async def wait_answering(url: str, *, within_s: float = 10.0) -> None:
    """Until ``url`` answers with a status below 500 (a server just started); an error if
    it does not within ``within_s``."""
    import httpx

    from tests.support.waiting import eventually

    async with httpx.AsyncClient() as client:

        async def answers() -> bool:
            try:
                return (await client.get(url)).status_code < 500
            except httpx.HTTPError:
                return False

        await eventually(answers, timeout=within_s)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; NaN for an empty set, and for q >= 99 from fewer than
    ``MIN_P99_SAMPLES`` values (see ``cell``: printed as "n<100: no p99")."""
    if not values or (q >= 99 and len(values) < MIN_P99_SAMPLES):
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, median, p95, p99 (NaN below 100 samples) and max of ``values``."""
    return {
        "n": len(values),
        "p50": statistics.median(values) if values else float("nan"),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
    }


def cell(spread: dict[str, float], key: str, digits: int = 1) -> str:
    """One table cell of a ``summary``: the value, or why there is none."""
    value = spread[key]
    if math.isnan(value):
        if key == "p99" and spread.get("n", 0):
            return f"n<{int(spread.get('p99_min', MIN_P99_SAMPLES))}: no p99"
        return "-"
    return f"{value:.{digits}f}"


def spread_cells(spread: dict[str, float], keys: Sequence[str] = ("p50", "p95", "p99"), digits: int = 1) -> list[str]:
    """n then the requested percentiles, ready for a table row (n is printed beside every
    percentile)."""
    return [str(int(spread["n"])), *(cell(spread, key, digits) for key in keys)]


def spread_line(spread: dict[str, float], keys: Sequence[str] = ("p50", "p95", "p99"), digits: int = 1) -> str:
    """``p50 / p95 / p99 (n=…)`` on one line."""
    return " / ".join(cell(spread, key, digits) for key in keys) + f" (n={int(spread['n'])})"


def figure(value: float, digits: int = 2) -> float | None:
    """A percentile for the JSON line: rounded, or null when there is none."""
    return None if math.isnan(value) else round(value, digits)


def fail(message: str) -> None:
    """Record a failure: the JSON line lists it under ``failures`` and the benchmark exits
    non-zero after printing its figures."""
    _failures.append(message)
    print(f"FAILURE: {message}", file=sys.stderr, flush=True)


def failures() -> list[str]:
    return list(_failures)


def check_delivered(what: str, expected: Iterable[Hashable], delivered: Iterable[Hashable]) -> dict[str, int]:
    """Count distinct delivered items against the expected set; a shortfall (or an item
    that was never sent) is a failure. Returns expected / delivered (all, with repeats) /
    distinct / missing / unexpected / repeats."""
    wanted = set(expected)
    got = list(delivered)
    distinct = set(got)
    counts = {
        "expected": len(wanted),
        "delivered": len(got),
        "distinct": len(distinct & wanted),
        "missing": len(wanted - distinct),
        "unexpected": len(distinct - wanted),
        "repeats": len(got) - len(distinct),
    }
    if counts["missing"]:
        fail(f"{what}: {counts['missing']} of {counts['expected']} never delivered")
    if counts["unexpected"]:
        fail(f"{what}: {counts['unexpected']} delivered that were never sent")
    return counts


def check_count(what: str, *, expected: int, distinct: int) -> None:
    """The same check when only the counts are known (e.g. from another process)."""
    if distinct < expected:
        fail(f"{what}: {expected - distinct} of {expected} never delivered")


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    print(f"\n{title}")
    print("  ".join(str(cell).ljust(width) for cell, width in zip(header, widths, strict=False)))
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)))


def machine() -> str:
    import os
    import platform

    return f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value


def emit(figures: dict[str, Any]) -> None:
    """The last line: one JSON object (NaN as null), with the recorded ``failures``; a
    benchmark with failures exits non-zero after printing it."""
    print(json.dumps(_clean({**figures, "failures": failures()}), sort_keys=True), flush=True)
    if _failures:
        sys.exit(1)


def progress(message: str) -> None:
    """A line on stderr with the seconds since the benchmark started (stdout is the table)."""
    print(f"[{time.monotonic() - _STARTED:5.1f}s] {message}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def rss_mib(pid: int) -> float:
    """Resident set size of a process now (Linux /proc), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def processes_named(name: str) -> list[int]:
    """Pids of the processes whose command name is ``name`` (e.g. ``beam.smp``, the
    RabbitMQ node), read from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def stop_quietly(process: Any, timeout: float = 60) -> None:
    """Stop a service process; one too slow to stop (a loaded machine) is killed, and
    the benchmark goes on to report instead of dying in its clean-up."""
    from tests.support.processes import stop

    with contextlib.suppress(subprocess.TimeoutExpired):
        stop(process, timeout=timeout)


async def paced(entry: Callable[[], Coroutine[Any, Any, None]], rate: float, seconds: float) -> list[Exception]:
    """``entry`` at ``rate`` a second for ``seconds``, on ``on_schedule``'s clock; an entry
    that takes long does not delay the next. Returns the errors entries raised (counted by
    the caller, never lost): every entry has finished when it returns."""
    if rate <= 0 or seconds < 0:
        return []
    errors: list[Exception] = []
    pending: set[asyncio.Task[None]] = set()

    async def guarded() -> None:
        try:
            await entry()
        except Exception as exc:  # every kind: the caller counts them
            errors.append(exc)

    def take_up(_n: int, _scheduled: float) -> None:
        task = asyncio.create_task(guarded())
        pending.add(task)
        task.add_done_callback(pending.discard)

    # Every n with n / rate <= seconds: 231 at 100/s for 2.3 s, where 2.3 * 100 is 229.999…
    count = math.floor(seconds * rate + 1e-9) + 1
    await on_schedule(take_up, rate=rate, count=count, start_at=time.perf_counter())
    await asyncio.gather(*pending)
    return errors


async def on_schedule(take_up: Callable[[int, float], None], *, rate: float, count: int, start_at: float) -> None:
    """``take_up(n, scheduled)`` in the running loop for each ``n`` below ``count``, at
    ``scheduled = start_at + n / rate`` (``time.perf_counter`` seconds); returns once the
    last is taken up, and raises what ``take_up`` raised.

    The schedule is kept by a thread sleeping on nanosecond timers, which hands each entry
    to the loop: the loop's own timers wake on whole milliseconds, which made an open-loop
    generator send 0.6 ms late at p50 and up to 2.2 ms at p99, lateness a latency timed
    from the schedule counts as the server's."""
    if count <= 0:
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    stop = threading.Event()

    def settle(error: BaseException | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def call(n: int, scheduled: float) -> None:
        try:
            take_up(n, scheduled)
        except Exception as exc:
            settle(exc)
            return
        if n == count - 1:
            settle(None)

    def keep() -> None:
        try:
            for n in range(count):
                scheduled = start_at + n / rate
                if (wait := scheduled - time.perf_counter()) > 0:
                    time.sleep(wait)
                if stop.is_set():
                    return
                loop.call_soon_threadsafe(call, n, scheduled)
        except Exception as exc:
            if not stop.is_set():
                loop.call_soon_threadsafe(settle, exc)

    thread = threading.Thread(target=keep, name="schedule", daemon=True)
    thread.start()
    try:
        await done
    finally:
        stop.set()  # after an error the thread hands nothing more to the loop
    await asyncio.to_thread(thread.join)  # off the loop: it may be sleeping until its next entry


def error_counts(what: str, errors: Iterable[Exception]) -> Counter[str]:
    """Errors as outcomes: ``what: Kind: message`` (the message cut short)."""
    return Counter(f"{what}: {type(error).__name__}: {str(error)[:80]}" for error in errors)


def count_answer(outcomes: Counter[str], what: str, response: Any, expected: int) -> bool:
    """One HTTP answer into ``outcomes``: ``what`` when its status is ``expected``, else
    ``what status: body`` (so the unexpected are told apart). True when expected."""
    matched = bool(response.status_code == expected)
    outcomes[what if matched else f"{what} {response.status_code}: {response.text[:80]}"] += 1
    return matched


def unexpected(what: str, outcomes: Counter[str], expected: Iterable[str]) -> int:
    """Fails the run on every outcome not in ``expected``; returns how many there were."""
    allowed = set(expected)
    wrong = {outcome: count for outcome, count in outcomes.items() if outcome not in allowed}
    if wrong:
        fail(f"{what}: unexpected outcomes {wrong}")
    return sum(wrong.values())


async def register_owner_phone(notification_url: str, owner_token: str) -> None:
    """The branch owner's phone, registered with notification: where fault pushes go."""
    import httpx

    async with httpx.AsyncClient(timeout=30) as client:
        phone = await client.put(
            f"{notification_url}/me/push-tokens",
            json={"token": "owner-phone-bench-0001", "platform": "android"},
            headers={"authorization": f"Bearer {owner_token}"},
        )
        phone.raise_for_status()
