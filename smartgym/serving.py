"""Serving several ASGI apps in one event loop, started in order and stopped in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click
import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette

from common.loops import loop_name
from common.unix_socket import bind_private_socket
from smartgym.http_protocol import HeadLimitedHttpToolsProtocol

log = logging.getLogger("smartgym")

# One listener: a name for the log, the app, and a TCP port or a Unix socket path.
Listener = tuple[str, FastAPI, int | Path]
# Builds a group of listeners when their turn comes (after the previous group listens):
# a service's apps are created only once the services it talks to are up.
ListenerGroup = Callable[[], Sequence[Listener]]

# How long a service keeps an idle client connection open. It must outlast the gateway's
# pooled keep-alive (30 s): with uvicorn's default of 5 s the gateway reused connections the
# service had just closed, and a POST (never retried) answered 502 on a loaded machine.
IDLE_CONNECTION_KEEP_S = 65


# How often a server refreshes its Date header. uvicorn's own loop wakes every 0.1 s to
# refresh it once a second and to poll for exit; a wake of an idle process costs ~0.25 ms
# of CPU on these machines (its caches gone cold), so an idle gateway used 0.26 % of a
# core, paid again by every replica; waking once a second, 0.07 %. Exit is signalled
# instead of polled, so stopping is no slower.
DATE_REFRESH_S = 1.0


def server_config(app: Starlette, *, host: str, port: int = 0, **overrides: Any) -> uvicorn.Config:
    """How a SmartGym HTTP server is configured: the services' HTTP protocol and keep-alive,
    no access log, logging left to the process. Tests and benchmarks that serve an app
    build their servers here too, so they cannot drift from production; ``overrides`` are
    further ``uvicorn.Config`` arguments (a loop for a server run in its own thread, a
    bound on a test server's shutdown)."""
    settings: dict[str, Any] = {
        "log_config": None,
        "lifespan": "on",
        "access_log": False,
        "timeout_keep_alive": IDLE_CONNECTION_KEEP_S,
        "http": HeadLimitedHttpToolsProtocol,
    }
    return uvicorn.Config(app, host=host, port=port, **(settings | overrides))


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to the launcher (several share one loop) and
    wakes once a second when idle, not ten times."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._exit_requested = False
        self._wake: asyncio.Future[None] | None = None
        super().__init__(config)

    @property
    def should_exit(self) -> bool:
        return self._exit_requested

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._exit_requested = value
        if value and self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        # on_tick(0) is uvicorn's once-a-second round: the Date header, then the exit and
        # request-limit checks. One timer and one future a round: the idle wake is short.
        loop = asyncio.get_running_loop()
        while not await self.on_tick(0):
            self._wake = wake = loop.create_future()
            timer = loop.call_later(DATE_REFRESH_S, _resolve, wake)
            try:
                await wake
            finally:
                timer.cancel()
                self._wake = None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def serve_all(host: str, groups: Sequence[ListenerGroup], *, ready_message: str) -> int:
    """Start each group in order (each waits for the previous to listen), run until SIGINT
    or SIGTERM or until one dies, then stop them in reverse order. Returns the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    running: list[tuple[str, uvicorn.Server, asyncio.Task[None]]] = []
    exit_code = 0
    try:
        for group in groups:
            try:
                listeners = group()
            except Exception:
                log.exception("service could not be built")
                return 1
            for name, app, where in listeners:
                uds = str(where) if isinstance(where, Path) else None
                port = where if isinstance(where, int) else 0
                server = _EmbeddedServer(server_config(app, host=host, port=port))
                # A Unix socket is bound here, owner-only: uvicorn's own would be world-writable.
                sockets = [bind_private_socket(where)] if isinstance(where, Path) else None
                task = asyncio.create_task(server.serve(sockets=sockets), name=f"serve:{name}")
                # uvicorn exposes start-up only as a flag.
                while not server.started and not task.done():  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                if task.done():
                    with contextlib.suppress(BaseException):  # uvicorn exits with SystemExit(3)
                        task.result()
                    log.error("service failed to start", extra={"service": name})
                    return 1
                running.append((name, server, task))
                log.info("service listening", extra={"service": name, "at": uds or f"http://{host}:{port}"})
        click.echo(f"SmartGym is up: {ready_message} ({loop_name(loop)} event loop)", err=True)
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *(task for _, _, task in running)], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if stopper not in done:
            exit_code = 1  # a service died on its own
    finally:
        for name, started_server, task in reversed(running):
            started_server.should_exit = True
            with contextlib.suppress(BaseException):
                await task
            log.info("service stopped", extra={"service": name})
    return exit_code
