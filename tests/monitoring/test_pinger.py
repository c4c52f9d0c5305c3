"""The pinger against real HTTP echo endpoints: every device checked once per period,
spread over the period, bounded in flight; failures (error status, hang, nobody there)
reported with what went wrong."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from ipaddress import ip_network

import pytest
from aiohttp import web

from monitoring.egress import EgressPolicy
from monitoring.pinger import Pinger
from tests.support.apps import free_port

LOOPBACK = EgressPolicy(networks={"lab": [ip_network("127.0.0.0/8")]}, service_cidrs=[])


def echo_device(
    *, asked: list[float] | None = None, silent: Callable[[], bool] = lambda: False
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A device's echo endpoint on a kept-open connection: answers every request unless
    ``silent()``, and notes when each was asked."""

    async def device(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                if asked is not None:
                    asked.append(time.monotonic())
                if not silent():
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return device


@pytest.fixture
async def devices():
    state = {"in_flight": 0, "peak": 0}
    seen: dict[str, list[float]] = defaultdict(list)

    async def echo(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        seen[name].append(time.monotonic())
        if name == "hung":  # abandoned by the pinger after its timeout: not in flight any more
            await asyncio.sleep(1)
            return web.Response(text="late")
        state["in_flight"] += 1
        state["peak"] = max(state["peak"], state["in_flight"])
        try:
            if name == "broken":
                return web.Response(status=500)
            await asyncio.sleep(0.02)
            return web.Response(text="ok")
        finally:
            state["in_flight"] -= 1

    app = web.Application()
    app.router.add_get("/echo/{name}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", state, seen
    await runner.cleanup()


async def test_every_device_is_checked_each_period_spread_out_and_bounded(devices):
    base, state, seen = devices
    results: dict[str, list[tuple[bool, str]]] = defaultdict(list)

    async def record(device_id: str, ok: bool, detail: str) -> None:
        results[device_id].append((ok, detail))

    pinger = Pinger(interval_s=0.5, timeout_s=0.2, concurrency=8, on_result=record, egress=LOOPBACK)
    await pinger.start()
    for n in range(60):
        pinger.set_target(f"dev-{n}", f"{base}/echo/dev-{n}", "lab")
    pinger.set_target("broken", f"{base}/echo/broken", "lab")
    pinger.set_target("hung", f"{base}/echo/hung", "lab")
    pinger.set_target("gone", f"http://127.0.0.1:{free_port()}/echo", "lab")
    await asyncio.sleep(1.3)
    await pinger.stop()

    assert all(len(results[f"dev-{n}"]) >= 2 for n in range(60))
    assert all(ok for n in range(60) for ok, _ in results[f"dev-{n}"])
    assert results["broken"][0] == (False, "status 500")
    assert results["hung"][0] == (False, "timeout")
    assert results["gone"][0] == (False, "connection refused")
    assert state["peak"] <= 8
    # Spread: the first round's checks are not bunched at the start of the period.
    first = sorted(times[0] for times in seen.values())
    assert first[-1] - first[0] > 0.3


async def test_pings_reuse_one_connection_and_survive_a_device_closing_it_between_pings():
    """Kept-open connections: many pings, few connections; a device that closes its idle
    connection (its keep-alive ran out) costs a reconnect, not a failure; an answer that
    is not HTTP is a failure that says so."""
    connections = {"count": 0}

    async def device(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections["count"] += 1
        answered = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if b"/garbage" in head:
                    writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                answered += 1
                if b"/closing" in head and answered == 2:
                    break  # hang up on an idle connection, as a device's keep-alive timeout does
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(device, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    results: dict[str, list[tuple[bool, str]]] = defaultdict(list)

    def record(device_id: str, ok: bool, detail: str) -> None:
        results[device_id].append((ok, detail))

    pinger = Pinger(interval_s=0.1, timeout_s=0.5, concurrency=8, on_result=record, egress=LOOPBACK)
    await pinger.start()
    try:
        pinger.set_target("steady", f"http://127.0.0.1:{port}/steady", "lab")
        await asyncio.sleep(1.0)
        steady_connections = connections["count"]
        pinger.set_target("closing", f"http://127.0.0.1:{port}/closing", "lab")
        pinger.set_target("garbage", f"http://127.0.0.1:{port}/garbage", "lab")
        await asyncio.sleep(1.0)
    finally:
        await pinger.stop()
        server.close()
        await server.wait_closed()
    assert len(results["steady"]) >= 5
    assert all(ok for ok, _ in results["steady"])
    assert steady_connections == 1
    assert len(results["closing"]) >= 4
    assert all(ok for ok, _ in results["closing"]), results["closing"]
    assert results["garbage"][0] == (False, "malformed answer")


async def test_a_silent_device_is_confirmed_while_its_first_ping_runs_and_pings_stay_on_a_grid():
    """A ping unanswered after ``confirm_after_s`` gets a confirming ping on a fresh
    connection at once; each keeps its whole timeout, so two unanswered pings take the
    timeout plus ``confirm_after_s``. A recheck in between does not move the device's
    regular pings: they stay one period apart on the grid they started on."""
    silent = {"on": False}
    asked: list[float] = []
    server = await asyncio.start_server(echo_device(asked=asked, silent=lambda: silent["on"]), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    results: list[tuple[float, bool, str]] = []
    rechecks: list[float] = []

    def record(device_id: str, ok: bool, detail: str) -> None:
        results.append((time.monotonic(), ok, detail))
        if not ok:
            rechecks.append(time.monotonic())
            pinger.recheck(device_id, 0.0)  # as the watch does after a timeout

    pinger = Pinger(
        interval_s=1.0, timeout_s=0.4, confirm_after_s=0.1, concurrency=8, on_result=record, egress=LOOPBACK
    )
    await pinger.start()
    try:
        pinger.set_target("dev", f"http://127.0.0.1:{port}/echo", "lab")
        await asyncio.sleep(2.2)  # two answered pings, one period apart
        answered = [at for at, ok, _ in results if ok]
        assert len(answered) >= 2
        silent["on"] = True
        asked.clear()
        results.clear()
        for _ in range(40):  # the next regular ping (within a period) goes unanswered
            if sum(1 for _, ok, _ in results if not ok) >= 2:
                break
            await asyncio.sleep(0.05)
        failed = [(at, detail) for at, ok, detail in results if not ok]
        assert [detail for _, detail in failed][:2] == ["timeout", "timeout"], results
        first, second = asked[0], asked[1]
        # The confirmation left 0.1 s after the first ping, not after its 0.4 s timeout.
        assert 0.08 <= second - first <= 0.25, (first, second)
        # Its result decided: the recheck asked while it ran was not sent as a third ping.
        assert failed[1][0] - failed[0][0] < 0.2
        assert pinger.confirmations >= 1
        silent["on"] = False
        results.clear()
        asked.clear()
        await asyncio.sleep(2.5)
        # Back on its grid: regular pings one period apart, not moved by the confirmation.
        regular = [at for at, ok, _ in results if ok]
        gaps = [later - earlier for earlier, later in itertools.pairwise(regular)]
        assert gaps
        assert all(0.9 <= gap <= 1.1 for gap in gaps[-2:]), gaps
    finally:
        await pinger.stop()
        server.close()
        await server.wait_closed()


async def test_a_connect_our_own_slow_loop_noticed_late_is_no_verdict_on_the_device():
    """A ping that must connect needs several turns of the event loop; when the loop itself
    is stalled past the timeout (a starved monitor), the device that accepted at once is
    not failed: the connect is tried once more with a fresh deadline."""

    server = await asyncio.start_server(echo_device(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    results: list[tuple[bool, str]] = []

    def record(device_id: str, ok: bool, detail: str) -> None:
        results.append((ok, detail))

    pinger = Pinger(interval_s=30.0, timeout_s=0.3, concurrency=8, on_result=record, egress=LOOPBACK)
    await pinger.start()
    try:
        pinger.set_target("dev", f"http://127.0.0.1:{port}/echo", "lab")
        pinger.recheck("dev", 0.0)
        while not pinger.in_flight:
            await asyncio.sleep(0)
        time.sleep(0.8)  # the whole loop stalls, mid-connect, well past the timeout
        for _ in range(100):
            if results:
                break
            await asyncio.sleep(0.02)
        assert results[0] == (True, ""), results
        assert pinger.late_connects == 1
    finally:
        await pinger.stop()
        server.close()
        await server.wait_closed()
