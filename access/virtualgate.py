"""A gate you can watch: the far end of a pty pair that behaves like a gate controller.

``smartgym up`` gives every gate configured with a ``virtual:<name>`` port one of these
instead of a USB adapter: access opens the pty like a real serial port and speaks the
same protocol to it (the line protocol, ``OPEN <gate> <ms>`` → ``OK``, or CH340 relay
frames), and the peer reports every command and relay change, so a newcomer sees the
door open and close in the console. Nothing here is used when a real port is configured.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pty
import select
import threading
import time
import tty
from collections.abc import Callable
from typing import Literal

log = logging.getLogger("smartgym.gate")

VIRTUAL_PREFIX = "virtual:"
MAX_LINE_BYTES = 128

Protocol = Literal["line", "ch340"]
Reporter = Callable[[str, dict[str, object]], None]


def is_virtual(port: str) -> bool:
    return port.startswith(VIRTUAL_PREFIX)


def _log_report(message: str, fields: dict[str, object]) -> None:
    log.info(message, extra=fields)


class VirtualGate:
    """The controller end of one virtual serial line. ``path`` is what access opens;
    ``relays`` maps gate number (or relay channel) to its state, for tests and readers."""

    def __init__(self, name: str, *, protocol: Protocol, report: Reporter = _log_report) -> None:
        self.name = name
        self.protocol = protocol
        self._report = report
        self.relays: dict[int, bool] = {}
        self.commands: list[str] = []
        self._closing_at: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master = -1
        self._slave = -1
        self.path = ""

    def start(self) -> VirtualGate:
        self._master, self._slave = pty.openpty()
        # Raw both ways: bytes pass unchanged (no echo, no CR/LF translation), as on a
        # USB adapter. Keeping our copy of the slave open means the line never reads as
        # hung up while access reconnects.
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self._thread = threading.Thread(target=self._run, name=f"virtual-gate-{self.name}", daemon=True)
        self._thread.start()
        self._report(
            f"virtual gate {self.name} ready on {self.path} ({self.protocol} protocol)",
            {"gate_line": self.name, "tty": self.path},
        )
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1

    def _run(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            self._release_due()
            try:
                readable, _, _ = select.select([self._master], [], [], 0.05)
                if not readable:
                    continue
                chunk = os.read(self._master, 1024)
            except OSError:
                time.sleep(0.05)  # nobody holds the line right now
                continue
            buffer += chunk
            buffer = self._frames(buffer) if self.protocol == "ch340" else self._lines(buffer)

    def _lines(self, buffer: bytes) -> bytes:
        while b"\n" in buffer:
            raw, buffer = buffer.split(b"\n", 1)
            text = raw.decode("ascii", errors="replace").strip()
            self.commands.append(text)
            self._answer(text)
        if len(buffer) > MAX_LINE_BYTES:
            buffer = b""  # noise without a line end
        return buffer

    def _answer(self, text: str) -> None:
        parts = text.split()
        if len(parts) == 3 and parts[0] == "OPEN" and parts[1].isdigit() and parts[2].isdigit():
            gate, open_ms = int(parts[1]), int(parts[2])
            # The relay switches before the answer, as a controller's does: whoever reads
            # OK may look at the gate and find it open.
            self._closing_at[gate] = time.monotonic() + open_ms / 1000
            self._switch(gate, True, f"OPEN for {open_ms} ms")
            self._write(b"OK\n")
            return
        self._write(b"ERR unknown\n")
        self._report(
            f"virtual gate {self.name}: unknown command {text[:40]!r} answered ERR",
            {"gate_line": self.name, "command": text[:40]},
        )

    def _frames(self, buffer: bytes) -> bytes:
        while len(buffer) >= 4:
            start, channel, state, checksum = buffer[:4]
            if start != 0xA0 or checksum != (start + channel + state) & 0xFF or state not in (0, 1):
                buffer = buffer[1:]  # resynchronise on the next start byte
                continue
            self.commands.append(f"RELAY {channel} {'ON' if state else 'OFF'}")
            if self.relays.get(channel) != bool(state):
                self._switch(channel, bool(state), "OPEN (relay frame)" if state else "CLOSE (relay frame)")
            buffer = buffer[4:]
        return buffer

    def _release_due(self) -> None:
        now = time.monotonic()
        for gate, due in list(self._closing_at.items()):
            if now >= due:
                del self._closing_at[gate]
                self._switch(gate, False, "CLOSE (open time over)")

    def _switch(self, gate: int, on: bool, what: str) -> None:
        self.relays[gate] = on
        self._report(
            f"virtual gate {self.name} #{gate}: {what}, relay {'ON' if on else 'OFF'}",
            {"gate_line": self.name, "gate_number": gate, "relay": "on" if on else "off"},
        )

    def _write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self._master, data)
