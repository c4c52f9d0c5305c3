"""The circuit breaker against a real HTTP upstream on loopback."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from common.breaker import AsyncCircuitBreaker, CircuitOpenError
from common.http import ServiceClient
from common.observability import Metrics
from smartgym.serving import server_config


class Upstream:
    """A real HTTP server whose health the test switches, counting what reaches it."""

    def __init__(self) -> None:
        self.healthy = False
        self.hits = 0
        self.delay_s = 0.0

        async def endpoint(_request: Request) -> PlainTextResponse:
            self.hits += 1
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            return PlainTextResponse("ok" if self.healthy else "sick", status_code=200 if self.healthy else 503)

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._socket = sock
        self.server = uvicorn.Server(
            server_config(Starlette(routes=[Route("/", endpoint)]), host="127.0.0.1", lifespan="off")
        )

    async def __aenter__(self) -> Upstream:
        self._task = asyncio.create_task(self.server.serve(sockets=[self._socket]))
        while not self.server.started:
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.should_exit = True
        await self._task


@pytest.fixture
async def upstream():
    async with Upstream() as server:
        yield server


async def test_open_breaker_fails_fast_without_network_then_half_open_probe_closes_it(upstream):
    metrics = Metrics()
    breaker = AsyncCircuitBreaker("upstream", fail_max=3, reset_timeout_s=0.5, metrics=metrics)
    client = ServiceClient("upstream", f"http://127.0.0.1:{upstream.port}", breaker=breaker, timeout_s=2)
    try:
        for _ in range(3):
            assert (await client.request("GET", "/")).status_code == 503
        assert breaker.state == "open"
        hits_when_opened = upstream.hits

        started = time.perf_counter()
        for _ in range(50):
            with pytest.raises(CircuitOpenError):
                await client.request("GET", "/")
        per_call_ms = (time.perf_counter() - started) / 50 * 1000
        assert upstream.hits == hits_when_opened  # no network attempt while open
        assert per_call_ms < 5

        upstream.healthy = True
        upstream.delay_s = 0.2  # the probe is slow, so the others really are concurrent
        await asyncio.sleep(0.55)
        results = await asyncio.gather(*(client.request("GET", "/") for _ in range(20)), return_exceptions=True)
        probes = [result for result in results if not isinstance(result, BaseException)]
        refused = [result for result in results if isinstance(result, CircuitOpenError)]
        assert len(probes) == 1  # half-open admits exactly one probe
        assert probes[0].status_code == 200
        assert len(refused) == 19
        assert breaker.state == "closed"
        assert upstream.hits == hits_when_opened + 1
        upstream.delay_s = 0
        assert (await client.request("GET", "/")).status_code == 200
        assert metrics.breaker_state.labels("upstream")._value.get() == 0
    finally:
        await client.aclose()


async def test_failed_probe_reopens_the_breaker(upstream):
    breaker = AsyncCircuitBreaker("upstream", fail_max=1, reset_timeout_s=0.2)
    client = ServiceClient("upstream", f"http://127.0.0.1:{upstream.port}", breaker=breaker, timeout_s=2)
    try:
        await client.request("GET", "/")
        assert breaker.state == "open"
        await asyncio.sleep(0.25)
        assert (await client.request("GET", "/")).status_code == 503  # the probe, still sick
        assert breaker.state == "open"
        with pytest.raises(CircuitOpenError):
            await client.request("GET", "/")
    finally:
        await client.aclose()


async def test_connection_refused_counts_as_failure():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    breaker = AsyncCircuitBreaker("dead", fail_max=2, reset_timeout_s=30)
    client = ServiceClient("dead", f"http://127.0.0.1:{dead_port}", breaker=breaker, timeout_s=1)
    try:
        for _ in range(2):
            with pytest.raises(httpx.ConnectError):
                await client.request("GET", "/")
        with pytest.raises(CircuitOpenError):
            await client.request("GET", "/")
    finally:
        await client.aclose()


async def test_cancelled_call_neither_trips_nor_closes():
    breaker = AsyncCircuitBreaker("slow", fail_max=1, reset_timeout_s=30)

    async def never() -> None:
        await asyncio.sleep(10)

    task = asyncio.create_task(breaker.call(never))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state == "closed"
    assert breaker.fail_counter == 0
