"""One kept-open HTTP/1.1 connection to one device, read by an asyncio protocol: the part
of HTTP an echo needs (a status line, the length of a short body) and nothing else.

At most one request is on a connection at a time, with one timer: first for the moment
a confirming ping is due, then for the timeout. What the connection finds goes to its
owner (the pinger) through ``EchoOwner``.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

# An echo needs no body: what a device (or whatever hides behind its URL) sends beyond
# this is not read.
MAX_ECHO_BYTES = 4096
MAX_HEAD_BYTES = 8192


class EchoOwner(Protocol):
    """What a connection tells the pinger that opened it."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def echo_done(self, connection: Echo, ok: bool, detail: str, *, keep: bool) -> None:
        """The ping on ``connection`` was answered (or failed); ``keep``: it may be reused."""

    def echo_dropped(self, connection: Echo) -> None:
        """``connection`` is closed: it is no longer idle for reuse."""

    def echo_retry(self, connection: Echo, request: bytes, deadline: float, confirm_at: float | None) -> None:
        """The device closed a reused idle connection as the ping went out: not an answer."""

    def echo_overdue(self, device_id: str) -> None:
        """The ping is still unanswered at its confirmation time."""


class Echo(asyncio.Protocol):
    """One connection to one device; at most one request on it at a time."""

    def __init__(self, owner: EchoOwner, device_id: str, key: tuple[str, int, bool], *, confirm: bool = False) -> None:
        self.owner, self.device_id, self.key = owner, device_id, key
        # A confirming ping (monitoring.pinger): it is not confirmed again.
        self.confirm = confirm
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.busy = False
        self.reused = False
        self._buffer = bytearray()
        self._body_left = -1  # >= 0 once the head is read: body bytes still to skip
        self._timer: asyncio.TimerHandle | None = None
        self._request = b""
        self._deadline = 0.0
        self._confirm_at: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not always an asyncio.Transport subclass: uvloop's
        # implement the same methods without inheriting from it.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, request: bytes, deadline: float, confirm_at: float | None = None) -> None:
        assert self.transport is not None
        self.busy = True
        self._request, self._deadline = request, deadline
        self._buffer.clear()
        self._body_left = -1
        # One timer per ping: first at the moment a confirmation is due (if this ping may
        # have one), then re-armed for the timeout only when the ping is still unanswered.
        if confirm_at is not None and confirm_at < deadline and not self.confirm:
            self._confirm_at = confirm_at
            self._timer = self.owner.loop.call_at(confirm_at, self._overdue)
        else:
            self._confirm_at = None
            self._timer = self.owner.loop.call_at(deadline, self._timed_out)
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        if not self.busy:  # unasked-for bytes: not an echo endpoint we can trust to keep
            self.close()
            return
        if self._body_left >= 0:
            self._skip_body(len(data))
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                self._finish(False, "malformed answer", keep=False)
            return
        head = bytes(self._buffer[:end])
        extra = len(self._buffer) - end - 4
        self._buffer.clear()
        status, length, keep = parse_head(head)
        if status is None:
            self._finish(False, "malformed answer", keep=False)
            return
        ok = 200 <= status < 300
        detail = "" if ok else f"status {status}"
        if length is None or length > MAX_ECHO_BYTES or not keep or extra > length:
            # No length, too long, or the device ends it: judged by its head, and the
            # connection goes with the rest of the answer unread.
            self._finish(ok, detail, keep=False)
            return
        self._result = (ok, detail)
        self._body_left = length
        self._skip_body(extra)

    def _skip_body(self, received: int) -> None:
        self._body_left -= received
        if self._body_left < 0:
            self._finish(False, "malformed answer", keep=False)
        elif self._body_left == 0:
            self._finish(*self._result, keep=True)

    _result: tuple[bool, str] = (False, "")

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.busy:
            if self.reused and self._body_left < 0 and not self._buffer:
                # The device closed an idle connection as we reused it (its keep-alive ran
                # out): not an answer. Try once on a fresh connection.
                self._cancel_timer()
                self.busy = False
                self.owner.echo_dropped(self)
                self.owner.echo_retry(self, self._request, self._deadline, self._confirm_at)
                return
            self._finish(False, "connection closed", keep=False)
        self.owner.echo_dropped(self)

    def _overdue(self) -> None:
        self._timer = None
        if self.busy:
            self._timer = self.owner.loop.call_at(self._deadline, self._timed_out)
            self.owner.echo_overdue(self.device_id)

    def _timed_out(self) -> None:
        self._timer = None
        if self.busy:
            self._finish(False, "timeout", keep=False)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _finish(self, ok: bool, detail: str, *, keep: bool) -> None:
        self._cancel_timer()
        self.busy = False
        if not keep:
            self.close()
        self.owner.echo_done(self, ok, detail, keep=keep)

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.abort()  # no lingering: a hung device would hold the socket


def parse_head(head: bytes) -> tuple[int | None, int | None, bool]:
    """(status, content length, keep-alive) of a response head; status None if it is not HTTP."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
        return None, None, False
    status = int(parts[1])
    keep = parts[0] == b"HTTP/1.1"
    length: int | None = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            value = value.strip()
            if not value.isdigit():
                return None, None, False
            length = int(value)
        elif name == b"transfer-encoding":
            length = None
            keep = False
        elif name == b"connection":
            keep = value.strip().lower() != b"close"
    if status in (204, 304) or 100 <= status < 200:
        length = 0
    return status, length, keep
