"""uvicorn's httptools protocol, with a bound on what a request may send without the parser
getting anywhere, as uvicorn's h11 protocol had.

httptools (llhttp, in C) parses a request for a fraction of h11's CPU, but uvicorn puts no
bound on what it gathers between the parser's steps: a client that never finishes its
headers, sends one endless header, or endless trailers after a chunked body, grows the
process's memory until it is killed. h11 refused more than 16 KiB of such bytes (with a
400); this protocol refuses them with 431 and closes.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

#: The most bytes received without the parser reaching the end of a head, a piece of body
#: or the end of a message: h11's own limit, so every head that passed before still
#: passes (a bearer token is ~1 KiB). Counted a read at a time, so a refusal comes at
#: most one read (~256 KiB) past it.
MAX_HEAD_BYTES = 16 * 1024

_REFUSAL = b"Request head larger than 16 KiB."


class HeadLimitedHttpToolsProtocol(HttpToolsProtocol):
    """Counts the bytes received since the parser last got somewhere (a head complete, a
    piece of body, a message complete); over ``MAX_HEAD_BYTES`` the request is refused
    with 431 and the connection closed. A body, however large, keeps resetting the count;
    a head, a chunk header or trailers that never end do not."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unparsed_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        self._unparsed_bytes += len(data)
        super().data_received(data)
        # Checked after parsing: the head may have ended inside this read.
        if self._unparsed_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._refuse()

    def on_headers_complete(self) -> None:
        self._unparsed_bytes = 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._unparsed_bytes = 0
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._unparsed_bytes = 0
        super().on_message_complete()

    def _refuse(self) -> None:
        self.logger.warning("Request refused: more than %d bytes without a complete head.", MAX_HEAD_BYTES)
        if (self.cycle is not None and not self.cycle.response_complete) or self.pipeline:
            # An earlier request on this connection is still being answered: a 431 written
            # now would be read as its response. The connection is closed instead.
            self.transport.close()
            return
        content = [STATUS_LINE[431]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: " + str(len(_REFUSAL)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                _REFUSAL,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
