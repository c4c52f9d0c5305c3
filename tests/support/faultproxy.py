"""A small asyncio TCP fault proxy (our stand-in for toxiproxy, which is not available).

proxy = FaultProxy(target_port=5672); await proxy.start()
... connect clients to proxy.port ...
proxy.cut()            # reset every open connection now
proxy.blackhole(True)  # keep connections open but forward nothing (silent network)
proxy.delay_s = 0.05   # add latency to every chunk
proxy.refuse(True)     # refuse new connections (listener stays up)
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.delay_s = 0.0
        self._blackhole = asyncio.Event()
        self._refuse = False
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.connections_accepted = 0

    @classmethod
    async def in_front_of(cls, url: str) -> tuple[FaultProxy, str]:
        """A started proxy in front of the server ``url`` names, and ``url`` through it
        (credentials and path kept)."""
        target = urllib.parse.urlsplit(url)
        proxy = cls(target_port=target.port or 5672, target_host=target.hostname or "127.0.0.1")
        await proxy.start()
        through = target._replace(netloc=f"{target.username}:{target.password}@127.0.0.1:{proxy.port}").geturl()
        return proxy, through

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        """Reset every open connection (both sides see the socket die)."""
        for writer in list(self._writers):
            transport = writer.transport
            if hasattr(transport, "abort"):
                transport.abort()
        self._writers.clear()

    def blackhole(self, on: bool) -> None:
        if on:
            self._blackhole.set()
        else:
            self._blackhole.clear()

    def refuse(self, on: bool) -> None:
        self._refuse = on

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._refuse:
            client_writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        self.connections_accepted += 1
        self._writers.update({client_writer, upstream_writer})
        pipes = [
            asyncio.create_task(self._pipe(client_reader, upstream_writer)),
            asyncio.create_task(self._pipe(upstream_reader, client_writer)),
        ]
        self._pipes.update(pipes)
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for task in pipes:
            task.cancel()
            self._pipes.discard(task)
        for writer in (client_writer, upstream_writer):
            self._writers.discard(writer)
            writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                while self._blackhole.is_set():
                    await asyncio.sleep(0.05)  # hold the bytes: the peer hears nothing
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                writer.write(chunk)
                await writer.drain()
