"""Ping/echo: the service asks every device "are you there?" on a fixed period.

Each device gets its own phase within the period (from its id), so thousands of checks
spread evenly instead of bunching up at the top of every period, and keeps it: its pings
stay on a fixed grid, one period apart, whatever confirmations came in between — the time
from a silent failure to the next ping never exceeds the period (a random jitter per round
let one interval reach the period plus the jitter, 10.5 s at 10 s). A bound caps how many
pings are in flight.

A silent failure is confirmed with margin: a ping still unanswered ``confirm_after_s``
after it went out gets a confirming ping on a fresh connection at once, while the first
one's timeout runs. Each ping keeps its whole timeout; two unanswered pings (``fail_after``
2) then take the timeout plus ``confirm_after_s`` instead of two timeouts and a pause (see
the ADR on monitoring's crash suspicion and sharding).

A ping is one HTTP/1.1 ``GET`` on a connection kept open to that device, read by an
asyncio protocol (monitoring.echo): no task, no stream and no client session per ping,
one timer for its timeout. At 2,000 pings a second (20,000 devices, 10 s period) a
general HTTP client's per-request machinery was most of a core; this is the part of HTTP
an echo needs — a status line, the length of a short body — and nothing else (see the ADR
on monitoring's crash suspicion and sharding). Idle connections are capped
(``keepalive_max``): each one is a file descriptor beside the device's heartbeat
connection; past the cap a ping's connection is closed after its answer.

Every ping goes through the egress policy (monitoring.egress): to a checked address, with
no redirects followed and at most a few KiB of the answer read.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import logging
import math
import ssl
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable

from monitoring.echo import Echo
from monitoring.egress import EgressPolicy, EgressRefused, Target

log = logging.getLogger(__name__)

# (device id, answered, what went wrong); may return an awaitable (tests), which is run
# as a task, but the service's callback is synchronous: a coroutine per ping costs more
# than judging the ping.
OnResult = Callable[[str, bool, str], Awaitable[None] | None]
USER_AGENT = "smartgym-monitoring"
# Pings due this soon go out now: one wake-up of the scheduler for a batch of them rather
# than one per ping (at 20,000 devices they are half a millisecond apart).
SLACK_S = 0.005
# A connect that timed out, noticed this long after its deadline: our own event loop was
# slow, and a connect needs several turns of it (the socket's result, the task, the
# transport, the protocol) — the device may have accepted long before we looked. Not a
# verdict on the device: tried once more with a fresh deadline (see _connect_then_ping).
LATE_S = 0.25


class Pinger:
    def __init__(
        self,
        *,
        interval_s: float,
        timeout_s: float,
        concurrency: int,
        on_result: OnResult,
        egress: EgressPolicy,
        confirm_after_s: float | None = None,
        keepalive_max: int = 50_000,
        agent: str = USER_AGENT,
    ) -> None:
        self._agent = agent.encode()
        self._egress = egress
        self.interval_s = interval_s
        self._timeout_s = timeout_s
        self._concurrency = concurrency
        self._in_flight = 0
        self._on_result = on_result
        self._confirm_after_s = confirm_after_s
        self._keepalive_max = keepalive_max
        self._targets: dict[str, tuple[str, str]] = {}  # device → (url, branch)
        self._due: list[tuple[float, str]] = []
        # Each device's one live schedule entry; older heap entries for it are stale.
        self._next: dict[str, float] = {}
        # Each device's first slot (monotonic): its pings stay on the grid it starts.
        self._anchor: dict[str, float] = {}
        # Devices with a confirming ping in flight: a recheck asked meanwhile is not sent,
        # the confirmation's answer decides.
        self._confirming: set[str] = set()
        self.confirmations = 0
        self.late_connects = 0  # connect timeouts noticed late and tried again
        self.hurried = 0  # devices pinged ahead of their slot after a takeover (see hurry)
        self._idle: dict[str, Echo] = {}  # device → its open connection, between pings
        self._requests: dict[tuple[str, Target], bytes] = {}
        self._wake = asyncio.Event()
        self._slot = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._checks: set[asyncio.Task[None]] = set()
        self._tls: ssl.SSLContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def set_target(self, device_id: str, url: str, branch_id: str) -> None:
        previous = self._targets.get(device_id)
        self._targets[device_id] = (url, branch_id)
        if previous is None:
            anchor = self._first_due(device_id)
            self._anchor[device_id] = anchor
            self._plan(device_id, anchor)
        elif previous != (url, branch_id):
            self._forget_connection(device_id)

    def remove_target(self, device_id: str) -> None:
        self._targets.pop(device_id, None)
        self._next.pop(device_id, None)  # its heap entry is dropped when it comes due
        self._anchor.pop(device_id, None)
        self._confirming.discard(device_id)
        self._forget_connection(device_id)

    def targets(self) -> int:
        return len(self._targets)

    def recheck(self, device_id: str, after_s: float) -> None:
        """Check ``device_id`` again soon (a failed ping is confirmed, not left a whole period),
        unless a confirming ping is already on its way: its answer decides. The device's
        next regular ping stays on its grid."""
        if device_id in self._targets and device_id not in self._confirming:
            self._plan(device_id, time.monotonic() + after_s)

    def hurry(self, device_ids: Iterable[str], *, within_s: float) -> int:
        """Ping these devices once within the next ``within_s``, spread evenly over it, then
        back on their own grid; returns how many were brought forward.

        For the devices of a shard taken from a replica that died: nobody has pinged them
        since before its lease ran out (0.7 of a period), and waiting for their phase on
        this replica's grid added up to another period. Spread, not all at once: every
        first ping must connect, and thousands of connections in the same instant on a busy
        loop are what made first pings time out at start-up. A device already due within
        ``within_s`` keeps its slot (no second ping moments after the first)."""
        now = time.monotonic()
        until = now + within_s
        hurried = 0
        for device_id in device_ids:
            due = self._next.get(device_id)
            if device_id not in self._targets or due is None or due <= until:
                continue
            # Another slice of the id's hash than its phase: an even spread that does not
            # follow the grid's order.
            share = (zlib.crc32(device_id.encode()) // 10_000 % 10_000) / 10_000
            self._plan(device_id, now + share * within_s)
            hurried += 1
        self.hurried += hurried
        return hurried

    def _plan(self, device_id: str, due: float) -> None:
        self._next[device_id] = due
        heapq.heappush(self._due, (due, device_id))
        self._wake.set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._schedule(), name="pinger")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for check in list(self._checks):
            check.cancel()
        await asyncio.gather(*self._checks, return_exceptions=True)
        for connection in list(self._idle.values()):
            connection.close()
        self._idle.clear()

    def _first_due(self, device_id: str) -> float:
        phase = (zlib.crc32(device_id.encode()) % 10_000) / 10_000 * self.interval_s
        return time.monotonic() + phase

    def _next_slot(self, device_id: str, after: float) -> float:
        """The device's first slot on its grid strictly after ``after`` (a regular ping's
        own time gives the one a period later; a recheck's, the next regular one)."""
        anchor = self._anchor.get(device_id, after)
        slots = math.floor((after - anchor) / self.interval_s + 1e-6) + 1
        return anchor + slots * self.interval_s

    async def _schedule(self) -> None:
        while True:
            if not self._due:
                self._wake.clear()
                await self._wake.wait()
                continue
            due, device_id = self._due[0]
            delay = due - time.monotonic()
            if delay > SLACK_S:
                self._wake.clear()
                # A timer that sets the event, not a timeout that cancels the wait (nor
                # wait_for, which on 3.11 can swallow a cancel that arrives as the event is
                # set, and stop() would wait for ever): at 2,000 pings a second a
                # cancellation per sleep was a visible share of the loop.
                timer = self.loop.call_later(delay, self._wake.set)
                try:
                    await self._wake.wait()
                finally:
                    timer.cancel()
                continue
            heapq.heappop(self._due)
            target = self._targets.get(device_id)
            if target is None or self._next.get(device_id) != due:
                continue
            next_due = self._next_slot(device_id, due)
            self._next[device_id] = next_due
            heapq.heappush(self._due, (next_due, device_id))
            while self._in_flight >= self._concurrency:
                self._slot.clear()
                await self._slot.wait()
            self._in_flight += 1
            self._check(device_id, *target)

    def _check(self, device_id: str, url: str, branch_id: str, *, confirm: bool = False) -> None:
        started = self.loop.time()
        deadline = started + self._timeout_s
        confirm_at = None if confirm or self._confirm_after_s is None else started + self._confirm_after_s
        target = self._egress.known_target(branch_id, url)
        if target is None:
            # A host name: resolved and checked on every ping, off the fast path.
            self._spawn(self._resolve_then_ping(device_id, url, branch_id, deadline, confirm_at, confirm))
        else:
            self._ping(device_id, target, deadline, confirm_at, confirm)

    def _confirm(self, device_id: str) -> None:
        """A ping is still unanswered at its confirmation time: a second one goes out at
        once on a fresh connection (the kept-open one may be what is dead), while the
        first's timeout runs. Beyond the in-flight bound: there are few, and waiting for a
        slot would delay exactly the check that matters."""
        target = self._targets.get(device_id)
        if target is None or self._stopping or device_id in self._confirming:
            return
        self._confirming.add(device_id)
        self.confirmations += 1
        self._in_flight += 1
        self._check(device_id, *target, confirm=True)

    async def _resolve_then_ping(
        self, device_id: str, url: str, branch_id: str, deadline: float, confirm_at: float | None, confirm: bool
    ) -> None:
        try:
            async with asyncio.timeout_at(deadline):
                target = await self._egress.target(branch_id, url)
        except EgressRefused as exc:
            self._report(device_id, False, f"refused: {exc.reason}"[:200], confirm=confirm)
            return
        except TimeoutError:
            self._report(device_id, False, "timeout", confirm=confirm)
            return
        self._ping(device_id, target, deadline, confirm_at, confirm)

    def _ping(
        self, device_id: str, target: Target, deadline: float, confirm_at: float | None = None, confirm: bool = False
    ) -> None:
        request = self._requests.get((device_id, target))
        if request is None:
            path = target.url.raw_path_qs or "/"
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {target.host_header}\r\n".encode()
                + b"User-Agent: "
                + self._agent
                + b"\r\nAccept: */*\r\n\r\n"
            )
            if len(self._requests) > 4 * max(len(self._targets), 1000):
                self._requests.clear()
            self._requests[(device_id, target)] = request
        key = _key_of(target)
        # A confirmation takes a fresh connection: the kept-open one may be what is dead.
        connection = None if confirm else self._idle.pop(device_id, None)
        if connection is not None and not connection.closed and connection.key == key:
            connection.reused = True
            connection.send(request, deadline, confirm_at)
            return
        if connection is not None:
            connection.close()
        self._spawn(self._connect_then_ping(device_id, target, request, deadline, confirm_at, confirm))

    def echo_retry(self, connection: Echo, request: bytes, deadline: float, confirm_at: float | None) -> None:
        device_id = connection.device_id
        url, branch_id = self._targets.get(device_id, ("", ""))
        target = self._egress.known_target(branch_id, url) if url else None
        if target is None or self._stopping:
            self._report(device_id, False, "connection closed", confirm=connection.confirm)
            return
        self._spawn(self._connect_then_ping(device_id, target, request, deadline, confirm_at, connection.confirm))

    async def _connect_then_ping(
        self,
        device_id: str,
        target: Target,
        request: bytes,
        deadline: float,
        confirm_at: float | None = None,
        confirm: bool = False,
        again: bool = False,
    ) -> None:
        host, port, tls = _key_of(target)
        confirmed = False

        def overdue() -> None:
            # Still connecting when the confirmation is due (a link that drops SYNs).
            nonlocal confirmed
            confirmed = True
            self._confirm(device_id)

        timer = self.loop.call_at(confirm_at, overdue) if confirm_at is not None else None
        try:
            async with asyncio.timeout_at(deadline):
                _, connection = await self.loop.create_connection(
                    lambda: Echo(self, device_id, (host, port, tls), confirm=confirm),
                    host,
                    port,
                    ssl=self._tls_context() if tls else None,
                    server_hostname=target.host if tls else None,
                )
        except TimeoutError:
            if not again and not self._stopping and self.loop.time() - deadline > LATE_S:
                # Measured at start-up (three replicas taking 15,000 devices on two cores,
                # turns of the loop ~1-2 s): first pings, which all connect, "timed out" by the
                # hundred on devices that had accepted at once.
                self.late_connects += 1
                fresh = self.loop.time() + self._timeout_s
                self._spawn(self._connect_then_ping(device_id, target, request, fresh, None, confirm, again=True))
                return
            self._report(device_id, False, "timeout", confirm=confirm)
            return
        except ConnectionRefusedError:
            self._report(device_id, False, "connection refused", confirm=confirm)
            return
        except (OSError, ssl.SSLError) as exc:
            self._report(device_id, False, type(exc).__name__, confirm=confirm)
            return
        finally:
            if timer is not None:
                timer.cancel()
        # The device accepted: it has the whole timeout to answer from the moment the request
        # leaves, however long our loop took to notice the connection (its connect had a
        # timeout of its own, above).
        deadline = max(deadline, self.loop.time() + self._timeout_s)
        if confirm_at is not None and (confirmed or self.loop.time() >= confirm_at):
            if not confirmed:
                self._confirm(device_id)
            confirm_at = None
        connection.send(request, deadline, confirm_at)

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def _spawn(self, work: Awaitable[None]) -> None:
        check = asyncio.ensure_future(work)
        self._checks.add(check)
        check.add_done_callback(self._checks.discard)

    # -- called by the connections (monitoring.echo.EchoOwner) ------------------------------

    def echo_overdue(self, device_id: str) -> None:
        self._confirm(device_id)

    def echo_done(self, connection: Echo, ok: bool, detail: str, *, keep: bool) -> None:
        device_id = connection.device_id
        if keep and not self._stopping and device_id in self._targets and len(self._idle) < self._keepalive_max:
            old = self._idle.get(device_id)
            if old is not None and old is not connection:
                old.close()
            self._idle[device_id] = connection
        elif keep:
            connection.close()
        self._report(device_id, ok, detail, confirm=connection.confirm)

    def echo_dropped(self, connection: Echo) -> None:
        if self._idle.get(connection.device_id) is connection:
            del self._idle[connection.device_id]

    def _forget_connection(self, device_id: str) -> None:
        connection = self._idle.pop(device_id, None)
        if connection is not None:
            connection.close()

    def _report(self, device_id: str, ok: bool, detail: str, *, confirm: bool = False) -> None:
        if confirm:
            # Before the result is judged: a failed confirmation may ask for another check.
            self._confirming.discard(device_id)
        self._in_flight -= 1
        self._slot.set()
        try:
            outcome = self._on_result(device_id, ok, detail)
        except Exception:
            log.exception("ping result handler failed", extra={"device_id": device_id})
            return
        if inspect.isawaitable(outcome):
            self._spawn(outcome)


def _key_of(target: Target) -> tuple[str, int, bool]:
    tls = target.url.scheme == "https"
    return (target.url.host or "", target.url.port or (443 if tls else 80), tls)
