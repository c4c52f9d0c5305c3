"""Services keep idle connections open longer than the gateway's pool does: a pooled
connection the service had quietly closed made the gateway answer 502 to a POST. An idle
server wakes once a second, yet dates its answers and stops at once."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
from fastapi import FastAPI

from smartgym.serving import DATE_REFRESH_S, IDLE_CONNECTION_KEEP_S, _EmbeddedServer, serve_all, server_config
from tests.support.apps import free_port

GATEWAY_POOL_KEEP_S = 30  # gateway/proxy.py's aiohttp keepalive_timeout


def test_a_service_outlasts_the_gateways_keep_alive() -> None:
    assert IDLE_CONNECTION_KEEP_S > GATEWAY_POOL_KEEP_S


async def test_an_idle_connection_is_still_open_after_uvicorns_default_keep_alive() -> None:
    app = FastAPI()

    @app.post("/echo")
    async def echo() -> dict[str, bool]:
        return {"ok": True}

    port = free_port()
    server = asyncio.create_task(serve_all("127.0.0.1", [lambda: [("echo", app, port)]], ready_message="test"))
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            await asyncio.sleep(0.05)
        request = f"POST /echo HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-length: 0\r\n\r\n".encode()
        for attempt in range(2):
            writer.write(request)
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), 5)
            assert status.startswith(b"HTTP/1.1 200"), (attempt, status)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(
                next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            )
            await reader.readexactly(length)
            if attempt == 0:
                await asyncio.sleep(6.5)  # past uvicorn's default of 5 s
        writer.close()
    finally:
        server.cancel()
        with contextlib.suppress(BaseException):
            await server


async def test_a_server_waking_once_a_second_still_dates_its_answers_and_stops_at_once() -> None:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    port = free_port()
    server = _EmbeddedServer(server_config(app, host="127.0.0.1", port=port, lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient() as client:
            first = (await client.get(f"http://127.0.0.1:{port}/ping")).headers["date"]
            await asyncio.sleep(DATE_REFRESH_S + 1.1)  # the header has a resolution of one second
            later = (await client.get(f"http://127.0.0.1:{port}/ping")).headers["date"]
        assert later != first
        started = time.monotonic()
        server.should_exit = True
        await asyncio.wait_for(task, 5)
        # Exit is signalled, not polled: no waiting for the next round.
        assert time.monotonic() - started < DATE_REFRESH_S / 2
    finally:
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 5)


class _CountingServer(_EmbeddedServer):
    rounds = 0

    async def on_tick(self, counter: int) -> bool:
        self.rounds += 1
        return await super().on_tick(counter)


async def test_an_idle_server_runs_about_one_round_a_second() -> None:
    server = _CountingServer(server_config(FastAPI(), host="127.0.0.1", port=free_port(), lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        before = server.rounds
        await asyncio.sleep(3 * DATE_REFRESH_S)
        # uvicorn's own loop runs ten rounds a second: about 30 here.
        assert server.rounds - before <= 5, server.rounds - before
    finally:
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 5)
