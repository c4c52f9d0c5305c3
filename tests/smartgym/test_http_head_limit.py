"""The services' HTTP protocol (httptools) refuses a request head over 16 KiB, as h11 did,
and holds nothing else against a request: not its body, not the heads of the requests
before it on the same connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request

from smartgym.http_protocol import MAX_HEAD_BYTES
from tests.support.apps import serving


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    return app


def _request(*, header_bytes: int, body: bytes = b"") -> bytes:
    # Padding headers of 1 KiB each: one header per line, as a bloated client would send.
    lines = [b"POST /echo HTTP/1.1", b"Host: test", b"Content-Length: " + str(len(body)).encode()]
    while sum(len(line) + 2 for line in lines) < header_bytes:
        lines.append(b"X-Pad-%d: " % len(lines) + b"a" * 1000)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@contextlib.asynccontextmanager
async def _connected(url: str) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A raw connection, closed however the test ends: a server that kept it open (one
    without the limit) would otherwise hold the test at the server's shutdown."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        yield reader, writer
    finally:
        writer.close()


async def _responses(url: str, payload: bytes, count: int) -> list[bytes]:
    async with _connected(url) as (reader, writer):
        writer.write(payload)
        await writer.drain()
        answers = []
        for _ in range(count):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
                         .split(b":")[1])  # fmt: skip
            answers.append(head.split(b"\r\n")[0] + b" " + await reader.readexactly(length))
        return answers


async def _read_until_closed(reader: asyncio.StreamReader) -> bytes:
    received = b""
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            received += chunk
    return received


async def test_a_head_over_the_limit_is_refused_with_431_and_the_connection_closed():
    async with serving(_app()) as url, _connected(url) as (reader, writer):
        # A head that never ends: the server must answer long before a megabyte is sent.
        writer.write(_request(header_bytes=MAX_HEAD_BYTES + 4096).rsplit(b"\r\n\r\n", 1)[0])
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # read to EOF: closed by the server
        assert answer.startswith(b"HTTP/1.1 431 ")
        assert b"Request head larger than 16 KiB." in answer


async def test_a_head_under_the_limit_with_a_large_body_in_the_same_write_is_served():
    body = b"x" * (1024 * 1024)
    async with serving(_app()) as url:
        [answer] = await _responses(url, _request(header_bytes=MAX_HEAD_BYTES - 1024, body=body), 1)
    assert answer == b'HTTP/1.1 200 OK {"received":1048576}'


async def test_each_request_on_a_kept_alive_connection_has_its_own_allowance():
    one = _request(header_bytes=MAX_HEAD_BYTES * 3 // 4, body=b"abc")
    async with serving(_app()) as url:
        answers = await _responses(url, one * 3, 3)
    assert answers == [b'HTTP/1.1 200 OK {"received":3}'] * 3


async def test_a_kept_alive_connection_is_limited_again_after_a_request():
    async with serving(_app()) as url, _connected(url) as (reader, writer):
        writer.write(_request(header_bytes=512, body=b"abc"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200 ")
        await reader.readexactly(len(b'{"received":3}'))
        # Then a head sent a kilobyte at a time, never ending; what comes back is read as
        # it comes (a write after the server closed fails the stream for later reads).
        answer = asyncio.create_task(_read_until_closed(reader))
        endless = _request(header_bytes=4 * MAX_HEAD_BYTES).rsplit(b"\r\n\r\n", 1)[0]
        with contextlib.suppress(ConnectionError):  # refused and closed before the end
            for start in range(0, len(endless), 1024):
                writer.write(endless[start : start + 1024])
                await writer.drain()
                await asyncio.sleep(0.001)
        await asyncio.wait_for(answer, 10)
    assert answer.result().startswith(b"HTTP/1.1 431 ")


async def test_endless_trailers_after_a_chunked_body_close_the_connection():
    async with serving(_app()) as url, _connected(url) as (reader, writer):
        writer.write(b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n")
        for number in range(4 * MAX_HEAD_BYTES // 1024):
            writer.write(b"X-Trailer-%d: " % number + b"t" * 1000 + b"\r\n")
        await writer.drain()
        # The request is still being read (its app waits for the body's end): nothing may
        # be answered for it, and the connection is closed.
        answer = await asyncio.wait_for(reader.read(), 10)
    assert answer == b""
