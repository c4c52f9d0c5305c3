"""The AMQP socket writer joins the frames of a burst into a few writes, in order, and
sends at once when asked to drain; a real bus still publishes and consumes through it."""

from __future__ import annotations

import asyncio
from typing import Any

from yarl import URL

from common.events.transport import CoalescingTransportFactory, CoalescingWriter


async def _server() -> tuple[asyncio.Server, int, asyncio.Queue[bytes]]:
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            received.put_nowait(chunk)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, port, received


class _CountingTransport:
    def __init__(self, inner: asyncio.WriteTransport, writes: list[int]) -> None:
        self._inner, self._writes = inner, writes

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._writes.append(len(data))
        self._inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def _read(received: asyncio.Queue[bytes], size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += await asyncio.wait_for(received.get(), timeout=5)
    return data


async def test_a_burst_leaves_in_a_few_writes_in_order():
    server, port, received = await _server()
    _reader, writer = await CoalescingTransportFactory().create(URL(f"amqp://127.0.0.1:{port}/"))
    assert isinstance(writer, CoalescingWriter)
    writes: list[int] = []
    # The writer sends through StreamWriter's transport: counted by a stand-in that passes
    # everything on (uvloop's transports do not let a method be replaced on them).
    writer._transport = _CountingTransport(writer.transport, writes)
    frames = [f"frame-{n:04d};".encode() for n in range(500)]

    async def one_frame_per_iteration() -> None:
        # How aiormq's publishes arrive: one frame, then a turn of the loop.
        for frame in frames:
            writer.write(frame)
            await asyncio.sleep(0)

    await one_frame_per_iteration()
    assert await _read(received, sum(map(len, frames))) == b"".join(frames)
    assert len(writes) <= 20, writes

    writes.clear()
    writer.write(b"ping")
    await writer.drain()  # a drain sends at once
    assert writes == [4]
    assert await _read(received, 4) == b"ping"
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
