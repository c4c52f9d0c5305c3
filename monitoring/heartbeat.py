"""Heartbeats over TCP: devices connect, authenticate, then send one JSON object per line.

::

    → {"device_id": "treadmill-07", "token": "…"}
    ← {"ok": true}
    → {"status": "ok", "readings": {"belt_temp_c": 41.5}}
    ← {"ok": true}

Every connection is handled on its own, with limits that keep one bad client from
hurting the others: the first line must arrive within ``auth_timeout_s`` (slow-loris),
lines are capped at ``max_line_bytes`` (the stream's buffer limit), a token bucket caps
the message rate (floods), repeated malformed lines end the connection, and the total
number of connections is bounded. Refusals say why, then close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.observability import Metrics

log = logging.getLogger(__name__)

MAX_MALFORMED = 3
KEEPALIVE_IDLE_S = 300
KEEPALIVE_INTERVAL_S = 60
KEEPALIVE_PROBES = 5


class Hello(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    token: str = Field(min_length=16, max_length=200)


class Beat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str = Field(min_length=1, max_length=40, pattern=r"^[a-z0-9_]+$")
    readings: dict[str, float] = Field(default_factory=dict, max_length=32)


OnBeat = Callable[[str, Beat], Awaitable[None]]
# (device id, True) once a device authenticated; (device id, False) when it hung up on us
# (a crash or a reboot closes the socket at once); never for connections we end ourselves.
OnPresence = Callable[[str, bool], None]


# A device silent for this many of its own heartbeat periods is hung up on: by then the
# detector has long announced it, and the socket only holds a file descriptor.
IDLE_PERIODS = 3


@dataclass(frozen=True)
class Admission:
    """A device let in. ``heartbeat_period_s`` is the period it registered (None: it sends
    no heartbeats by schedule), which sets how long its connection may stay silent."""

    heartbeat_period_s: float | None = None


# (device id, token) → the device's admission, or None when refused.
Authenticate = Callable[[str, str], Awaitable[Admission | None]]


@dataclass(frozen=True)
class Limits:
    max_line_bytes: int = 4096
    auth_timeout_s: float = 5.0
    # The least silence allowed an authenticated device; one with a longer period gets
    # IDLE_PERIODS of its own (a period may be up to a day).
    idle_timeout_s: float = 3600.0
    messages_per_s: float = 2.0
    burst: int = 10
    max_connections: int = 20_000


class HeartbeatServer:
    def __init__(
        self,
        *,
        authenticate: Authenticate,
        on_beat: OnBeat,
        limits: Limits,
        metrics: Metrics,
        on_presence: OnPresence | None = None,
    ) -> None:
        self._authenticate = authenticate
        self._on_beat = on_beat
        self._on_presence = on_presence
        self._stopping = False
        self._limits = limits
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        # Each device's newest connection on this replica: a device that connects again
        # (after a link that died without a FIN) replaces its old one, which would otherwise
        # hold a slot until the keep-alive probes or its idle limit end it. Two devices
        # sharing an id keep replacing each other, which their logs then show.
        self._newest: dict[str, asyncio.StreamWriter] = {}
        self.connections = Gauge(
            "monitoring_heartbeat_connections", "Open heartbeat connections.", registry=metrics.registry
        )
        self.refused = Counter(
            "monitoring_heartbeat_refusals",
            "Connections or lines refused, by reason.",
            ["reason"],
            registry=metrics.registry,
        )

    @property
    def open_connections(self) -> int:
        return len(self._handlers)

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(
            self._handle, host, port, limit=self._limits.max_line_bytes, backlog=4096
        )
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        # Hang up on every device; each handler then ends on its own (cancelling them
        # instead leaves asyncio's stream callback to report a CancelledError).
        for writer in list(self._writers):
            writer.close()
        if self._handlers:
            _, stuck = await asyncio.wait(list(self._handlers), timeout=5.0)
            for task in stuck:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.connections.inc()
        _keep_alive(writer)
        device_id: str | None = None
        hung_up = False
        try:
            if self.open_connections > self._limits.max_connections:
                await self._refuse(writer, "server_full")
                return
            admitted = await self._hello(reader, writer)
            if admitted is not None:
                device_id, admission = admitted
                self._take_over(device_id, writer)
                self._presence(device_id, True)
                await self._beats(device_id, reader, writer, idle_timeout_s=self._idle_timeout(admission))
        except (OSError, asyncio.IncompleteReadError):
            # Reset, closed, or a link the keep-alive probes found dead (ETIMEDOUT,
            # EHOSTUNREACH): gone, either way.
            hung_up = True
        finally:
            self.connections.dec()
            self._handlers.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if device_id is not None and self._newest.get(device_id) is writer:
                del self._newest[device_id]
                # Only the newest connection's hang-up is the device's: a replaced one ends
                # because its device is back on another.
                if hung_up and not self._stopping:
                    self._presence(device_id, False)

    def _take_over(self, device_id: str, writer: asyncio.StreamWriter) -> None:
        old = self._newest.get(device_id)
        self._newest[device_id] = writer
        if old is not None and old is not writer:
            self.refused.labels("replaced").inc()
            if not old.is_closing():
                old.write(b'{"error": "replaced"}\n')  # sent before the close, as refusals are
            old.close()

    def _presence(self, device_id: str, connected: bool) -> None:
        if self._on_presence is not None:
            try:
                self._on_presence(device_id, connected)
            except Exception:
                log.exception("presence callback failed", extra={"device_id": device_id})

    def _idle_timeout(self, admission: Admission) -> float:
        period = admission.heartbeat_period_s or 0.0
        return max(self._limits.idle_timeout_s, IDLE_PERIODS * period)

    async def _hello(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[str, Admission] | None:
        line = await self._line(reader, writer, self._limits.auth_timeout_s)
        if line is None:
            return None
        try:
            hello = Hello.model_validate_json(line)
        except ValidationError:
            await self._refuse(writer, "malformed_hello")
            return None
        admission = await self._authenticate(hello.device_id, hello.token)
        if admission is None:
            await self._refuse(writer, "unauthenticated")
            return None
        await _send(writer, {"ok": True})
        return hello.device_id, admission

    async def _beats(
        self,
        device_id: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        idle_timeout_s: float,
    ) -> None:
        tokens, refilled = float(self._limits.burst), time.monotonic()
        malformed = 0
        while True:
            line = await self._line(reader, writer, idle_timeout_s)
            if line is None:
                return
            now = time.monotonic()
            tokens = min(self._limits.burst, tokens + (now - refilled) * self._limits.messages_per_s)
            refilled = now
            if tokens < 1:
                await self._refuse(writer, "flood")
                return
            tokens -= 1
            try:
                beat = Beat.model_validate_json(line)
            except ValidationError as exc:
                malformed += 1
                self.refused.labels("malformed").inc()
                if malformed >= MAX_MALFORMED:
                    await self._refuse(writer, "malformed")
                    return
                await _send(writer, {"error": "malformed", "detail": _first_error(exc)})
                continue
            await self._on_beat(device_id, beat)
            await _send(writer, {"ok": True})

    async def _line(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout_s: float) -> bytes | None:
        try:
            line = await asyncio.wait_for(reader.readuntil(b"\n"), timeout_s)
        except TimeoutError as exc:
            if exc.errno is not None:
                # The socket's own ETIMEDOUT (keep-alive probes unanswered): the link is
                # dead, which is the device gone, not a silence it chose.
                raise
            await self._refuse(writer, "timeout")
            return None
        except asyncio.LimitOverrunError:
            await self._refuse(writer, "line_too_long")
            return None
        # An IncompleteReadError (the device hung up) goes up to _handle, which reports it.
        return line

    async def _refuse(self, writer: asyncio.StreamWriter, reason: str) -> None:
        self.refused.labels(reason).inc()
        with contextlib.suppress(ConnectionError):
            await _send(writer, {"error": reason})


def _keep_alive(writer: asyncio.StreamWriter) -> None:
    """TCP keep-alive probes after 5 quiet minutes: a link that died without a FIN (a NAT
    that forgot the flow, a pulled cable) is found in about ten, not at the idle limit, and
    reported like a hang-up (the watch then pings the device at once)."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; elsewhere the system's defaults
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)


async def _send(writer: asyncio.StreamWriter, message: dict[str, object]) -> None:
    if writer.is_closing():
        # A device gone while its last lines were still being read. asyncio's loop drops
        # the write and fails the drain; uvloop's raises RuntimeError on the write itself.
        raise ConnectionResetError("the device's connection is gone")
    writer.write(json.dumps(message).encode() + b"\n")
    await asyncio.wait_for(writer.drain(), 5.0)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', '')}"[:200]
