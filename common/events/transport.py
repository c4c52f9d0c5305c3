"""The AMQP connection's socket, with the frames of one loop iteration sent together.

aiormq writes every frame it is handed straight to the socket: a burst of 500 publishes
is 500 ``send()`` calls, and on loopback each one also runs the broker side's TCP receive
path on our CPU. Profiles of the outbox relay put more than a third of its CPU there.
This writer keeps what is written during one iteration of the event loop and hands it to
the transport in one piece at the end of it (or at once when aiormq asks to drain), so a
pipelined batch leaves in a few large writes. Order is unchanged and nothing waits longer
than the current iteration.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiormq.connection import SSLContextProvider, TransportFactory
from aiormq.exceptions import AMQPConnectionError
from yarl import URL

# A burst is held for at most this many loop iterations, or this many bytes.
MAX_DEFERRALS = 64
QUIET_ITERATIONS = 2
FLUSH_BYTES = 128 * 1024
# asyncio's own default for open_connection's reader.
_READER_LIMIT = 2**16


class CoalescingWriter(asyncio.StreamWriter):
    """A :class:`asyncio.StreamWriter` that joins the writes of one loop iteration."""

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        protocol: asyncio.StreamReaderProtocol,
        reader: asyncio.StreamReader,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(transport, protocol, reader, loop)
        self._loop_ref = loop
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._flush_scheduled = False
        self._written_since_check = False
        self._deferrals = 0
        self._quiet = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._pending.append(bytes(data))
        self._pending_bytes += len(data)
        if self._pending_bytes >= FLUSH_BYTES:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._written_since_check = False
            self._deferrals = 0
            self._quiet = 0
            self._loop_ref.call_soon(self._maybe_flush)
        else:
            self._written_since_check = True

    def writelines(self, data: Any) -> None:
        for chunk in data:
            self.write(chunk)

    def _maybe_flush(self) -> None:
        # aiormq's publishes take turns on a channel lock, so a burst arrives one frame
        # every iteration or two: hold it while it keeps coming, a few iterations at most.
        if not self._flush_scheduled:
            return
        if self._written_since_check:
            self._quiet = 0
        else:
            self._quiet += 1
        self._written_since_check = False
        self._deferrals += 1
        if self._quiet < QUIET_ITERATIONS and self._deferrals < MAX_DEFERRALS:
            self._loop_ref.call_soon(self._maybe_flush)
            return
        self.flush()

    def flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending:
            return
        payload = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        if not self.transport.is_closing():
            super().write(payload)

    async def drain(self) -> None:
        self.flush()
        await super().drain()

    def close(self) -> None:
        self.flush()
        super().close()


class CoalescingTransportFactory(TransportFactory):
    """aiormq's TCP/TLS transport factory, with a :class:`CoalescingWriter`."""

    async def create(self, url: URL, **kwargs: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        provider: SSLContextProvider | None = kwargs.pop("ssl_context_provider", None)
        ssl = await provider.get_context() if url.scheme == "amqps" and provider is not None else None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_READER_LIMIT, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, _ = await loop.create_connection(
                lambda: protocol, url.host or "localhost", url.port or 5672, ssl=ssl, **kwargs
            )
        except OSError as exc:
            raise AMQPConnectionError(*exc.args) from exc
        return reader, CoalescingWriter(transport, protocol, reader, loop)
