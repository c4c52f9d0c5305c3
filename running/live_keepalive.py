"""Keep-alive for the live sockets: a ping only to a socket that has gone quiet.

The library's own keep-alive pings every socket every interval, one task each. At 12,000
sockets that is 600 pings a second, each a write, a pong to read and a timeout to arm:
a sixth of a replica's CPU at 2,000 runners and 10,000 watchers (docs/adr/0064). Most of
those sockets prove themselves alive without it:

- a runner sends a point a second: its frames are the peer's own;
- a watcher of a moving run gets a position a second, and the peer's TCP acknowledges
  each; ``TCP_USER_TIMEOUT`` (set on every live socket to interval + timeout) makes the
  kernel end a connection whose data stays unacknowledged that long, the dead peer the
  ping would have found, without a byte more.

So a socket is pinged when nothing came from it and nothing went to it for an interval,
or when what is written to it has stayed queued (its peer reads nothing) for an interval.
Its pong must come within the timeout, or the connection is failed with 1011, as the
library does. One sweep every quarter interval looks at every socket and spreads the
pings it finds due over the next quarter. A dead quiet socket is found within interval +
half an interval + timeout; one with data in flight within interval + timeout, by its
kernel. Where the platform has no ``TCP_USER_TIMEOUT``, writes are no sign of life and
a socket is pinged whenever nothing has been read from it for an interval."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from common.periodic import Periodic

log = logging.getLogger(__name__)


class Outbound(Protocol):
    """What writes to a socket: the monotonic time of its last write."""

    sent_at: float


KERNEL_WATCHES_WRITES = hasattr(socket, "TCP_USER_TIMEOUT")


class Liveness:
    """One socket's signs of life. ``heard_at`` (monotonic) is set by whoever reads its
    frames, one attribute store a frame; ``outbound`` is the group whose messages it
    receives."""

    __slots__ = ("backed_up_since", "connection", "heard_at", "outbound", "ping", "writes_count")

    def __init__(self, connection: ServerConnection, *, writes_count: bool) -> None:
        self.connection = connection
        self.heard_at = time.monotonic()
        self.outbound: Outbound | None = None
        # Writes show life only where the kernel ends a connection that leaves them unread.
        self.writes_count = writes_count
        self.backed_up_since: float | None = None
        # A ping waiting for its turn in the sweep's spread (a timer), or under way (a task).
        self.ping: asyncio.TimerHandle | asyncio.Task[None] | None = None

    def last_sign(self) -> float:
        if self.outbound is None or not self.writes_count:
            return self.heard_at
        return max(self.heard_at, self.outbound.sent_at)

    def backed_up_for(self, now: float) -> float:
        """How long what is written to the socket has stayed queued (0 if it has not)."""
        if self.connection.transport.get_write_buffer_size() == 0:
            self.backed_up_since = None
            return 0.0
        if self.backed_up_since is None:
            self.backed_up_since = now
        return now - self.backed_up_since


class Keepalive:
    def __init__(self, *, interval_s: float, timeout_s: float, close_timeout_s: float) -> None:
        self._interval = interval_s
        self._timeout = timeout_s
        self._close_timeout = close_timeout_s
        self._sockets: dict[ServerConnection, Liveness] = {}
        self._sweeper = Periodic("live-keepalive", interval_s / 4, self._sweep)
        self.timed_out = 0
        if not KERNEL_WATCHES_WRITES:
            log.warning("no TCP_USER_TIMEOUT here: a live socket is pinged whenever it is not heard from")

    def __len__(self) -> int:
        return len(self._sockets)

    def watch(self, connection: ServerConnection) -> Liveness:
        """Track ``connection`` from now on; its TCP gives up on unacknowledged data after
        interval + timeout."""
        writes_count = KERNEL_WATCHES_WRITES
        if writes_count:
            try:
                sock = connection.transport.get_extra_info("socket")
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, self.user_timeout_ms)
            except (OSError, AttributeError):  # closed already, or not a TCP socket
                writes_count = False
        liveness = self._sockets[connection] = Liveness(connection, writes_count=writes_count)
        return liveness

    def forget(self, connection: ServerConnection) -> None:
        liveness = self._sockets.pop(connection, None)
        if liveness is not None and liveness.ping is not None:
            liveness.ping.cancel()

    @property
    def user_timeout_ms(self) -> int:
        return int((self._interval + self._timeout) * 1000)

    async def start(self) -> None:
        await self._sweeper.start()

    async def stop(self) -> None:
        await self._sweeper.stop()
        pending = [liveness.ping for liveness in self._sockets.values() if liveness.ping is not None]
        for ping in pending:
            ping.cancel()
        await asyncio.gather(*(ping for ping in pending if isinstance(ping, asyncio.Task)), return_exceptions=True)

    async def _sweep(self) -> None:
        """Ping every socket quiet, or backed up, for an interval that has no ping under
        way, the pings spread evenly until the next sweep: thousands of watchers that
        connected together would otherwise be pinged in one burst that holds every
        delivery behind it."""
        now = time.monotonic()
        quiet_since = now - self._interval
        due = [
            liveness
            for liveness in self._sockets.values()
            if liveness.ping is None
            and (liveness.last_sign() <= quiet_since or liveness.backed_up_for(now) >= self._interval)
        ]
        loop = asyncio.get_running_loop()
        step = self._interval / 4 / len(due) if due else 0.0
        for position, liveness in enumerate(due):
            liveness.ping = loop.call_later(position * step, self._start_ping, liveness)

    def _start_ping(self, liveness: Liveness) -> None:
        liveness.ping = asyncio.get_running_loop().create_task(self._ping(liveness))

    async def _ping(self, liveness: Liveness) -> None:
        connection = liveness.connection
        try:
            # The ping's own write counts against the timeout: behind a full buffer it waits.
            async with asyncio.timeout(self._timeout):
                pong = await connection.ping()
                await pong
            liveness.heard_at = time.monotonic()
            # It reads: a slow reader's queue has to stay for a whole interval again
            # before the next ping, not be pinged at every sweep.
            liveness.backed_up_since = None
        except TimeoutError:
            self.timed_out += 1
            await self._fail(connection)
        except ConnectionClosed:
            pass
        except Exception:  # logged now, not when the task is collected
            log.exception("live keep-alive ping failed")
        finally:
            liveness.ping = None

    async def _fail(self, connection: ServerConnection) -> None:
        """Close with 1011 as the library does, but without waiting on a peer that reads
        nothing: the close frame may sit behind a full buffer. Past the close timeout the
        connection is dropped."""
        try:
            async with asyncio.timeout(self._close_timeout), connection.send_context():
                connection.protocol.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        except (TimeoutError, ConnectionClosed):
            pass
        if not connection.transport.is_closing():
            connection.transport.abort()
