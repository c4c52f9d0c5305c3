"""Keep-alive for the live sockets: a ping only to a socket that has gone quiet.

The library's own keep-alive pings every socket every interval, one task each. At 12,000
sockets that is 600 pings a second, each a write, a pong to read and a timeout to arm:
a sixth of a replica's CPU at 2,000 runners and 10,000 watchers (docs/adr/0064). Most of
those sockets prove themselves alive without it:

- a runner sends a point a second: its frames are the peer's own;
- a watcher of a moving run gets a position a second, and the peer's TCP acknowledges
  each; ``TCP_USER_TIMEOUT`` (set on every live socket to interval + timeout) makes the
  kernel end a connection whose data stays unacknowledged that long, the dead phone
  the ping would have found, without a byte more.

So a socket is pinged only when nothing came from it and nothing went to it for an
interval; its pong must come within the timeout, or the connection is failed with 1011,
as the library does. One sweep every quarter interval looks at every socket and starts a
ping task for the quiet ones only. A dead quiet socket is found within interval + timeout
+ a quarter interval; one with data in flight within interval + timeout (the kernel)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from typing import Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

log = logging.getLogger(__name__)


class Outbound(Protocol):
    """What writes to a socket: the monotonic time of its last write."""

    sent_at: float


class Liveness:
    """One socket's signs of life. ``heard_at`` is set by whoever reads its frames (one
    attribute store a frame); ``outbound`` is the group whose messages it receives."""

    __slots__ = ("connection", "heard_at", "outbound", "ping")

    def __init__(self, connection: ServerConnection, now: float) -> None:
        self.connection = connection
        self.heard_at = now
        self.outbound: Outbound | None = None
        # A ping waiting for its turn in the sweep's spread (a timer), or under way (a task).
        self.ping: asyncio.TimerHandle | asyncio.Task[None] | None = None

    def last_sign(self) -> float:
        if self.outbound is None:
            return self.heard_at
        return max(self.heard_at, self.outbound.sent_at)


class Keepalive:
    def __init__(self, *, interval_s: float, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval_s
        self._timeout = timeout_s
        self._clock = clock
        self._sockets: dict[ServerConnection, Liveness] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.pings_sent = 0
        self.timed_out = 0

    def watch(self, connection: ServerConnection) -> Liveness:
        """Track ``connection`` from now on; its TCP gives up on unacknowledged data after
        interval + timeout."""
        with contextlib.suppress(OSError, AttributeError):  # a closed socket: nothing to set
            sock = connection.transport.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, self.user_timeout_ms)
        liveness = self._sockets[connection] = Liveness(connection, self._clock())
        return liveness

    def forget(self, connection: ServerConnection) -> None:
        liveness = self._sockets.pop(connection, None)
        if liveness is not None and liveness.ping is not None:
            liveness.ping.cancel()

    @property
    def user_timeout_ms(self) -> int:
        return int((self._interval + self._timeout) * 1000)

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def stop(self) -> None:
        tasks = [liveness.ping for liveness in self._sockets.values() if isinstance(liveness.ping, asyncio.Task)]
        if self._sweeper is not None:
            tasks.append(self._sweeper)
            self._sweeper = None
        for liveness in self._sockets.values():
            if isinstance(liveness.ping, asyncio.TimerHandle):
                liveness.ping.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _sweep_forever(self) -> None:
        period = self._interval / 4
        while True:
            await asyncio.sleep(period)
            try:
                self.sweep(spread_s=period)
            except Exception:  # a sweep must not end the keep-alive of every socket
                log.exception("live keep-alive sweep failed")

    def sweep(self, *, spread_s: float = 0.0) -> None:
        """Ping every socket quiet for an interval that has no ping under way, the pings
        spread evenly over ``spread_s``: thousands of watchers that connected together
        would otherwise be pinged in one burst that holds every delivery behind it."""
        quiet_since = self._clock() - self._interval
        due = [
            liveness
            for liveness in self._sockets.values()
            if liveness.ping is None and liveness.last_sign() <= quiet_since
        ]
        loop = asyncio.get_running_loop()
        step = spread_s / len(due) if due else 0.0
        for position, liveness in enumerate(due):
            liveness.ping = loop.call_later(position * step, self._start_ping, liveness)

    def _start_ping(self, liveness: Liveness) -> None:
        liveness.ping = asyncio.get_running_loop().create_task(self._ping(liveness))

    async def _ping(self, liveness: Liveness) -> None:
        connection = liveness.connection
        try:
            pong = await connection.ping()
            self.pings_sent += 1
            async with asyncio.timeout(self._timeout):
                await pong
            liveness.heard_at = self._clock()
        except TimeoutError:
            self.timed_out += 1
            with contextlib.suppress(ConnectionClosed):
                async with connection.send_context():
                    connection.protocol.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        except ConnectionClosed:
            pass
        finally:
            liveness.ping = None
