"""An ASGI app served by uvicorn on a loopback port from a background thread, for tests
whose own code is synchronous (a browser driven with Playwright's sync API)."""

from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import FastAPI

from common.loops import configured_choice, resolved_name
from smartgym.serving import server_config
from tests.support.apps import free_port


class ThreadServer:
    def __init__(self, app: FastAPI, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Served as a service is, on the services' loop (its own, in its thread).
        config = server_config(app, host="127.0.0.1", port=self.port, loop=resolved_name(configured_choice()))
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            assert self._thread.is_alive(), "the server thread died while starting"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=20)

    def __exit__(self, *_exc: object) -> None:
        if self._thread.is_alive():
            self.stop()
