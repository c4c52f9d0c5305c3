"""Running service apps in tests: lifespan plus an httpx client over ASGI, or a real
uvicorn server on a loopback port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import uvicorn
from argon2 import PasswordHasher
from fastapi import FastAPI

from common.unix_socket import bind_private_socket
from smartgym.serving import server_config

SHUTDOWN_WAIT_S = 5

# Fast hashing for tests; production parameters are the library defaults.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


@asynccontextmanager
async def asgi_client(app: FastAPI, base_url: str = "http://test") -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def serving(
    app: FastAPI, port: int | None = None, *, uds: str | None = None, host: str = "127.0.0.1"
) -> AsyncIterator[str]:
    """Serve ``app`` on a real loopback socket (or a Unix socket) as a service is served;
    yields its base URL. Stopping waits at most ``SHUTDOWN_WAIT_S`` for open connections
    and requests: a test that left one open fails on its own assertion, not by hanging."""
    port = port or free_port()
    server = uvicorn.Server(server_config(app, host=host, port=port, timeout_graceful_shutdown=SHUTDOWN_WAIT_S))
    # Unix sockets the way `smartgym serve` binds them (owner-only), not uvicorn's 0666.
    sockets = [bind_private_socket(Path(uds))] if uds is not None else None
    task = asyncio.create_task(server.serve(sockets=sockets))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task
