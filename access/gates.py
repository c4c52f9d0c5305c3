"""Gate control over serial lines (pyserial), behind one driver interface.

* :class:`SerialLine` owns one port. pyserial is blocking, so every conversation on the
  wire runs on the line's own thread, one at a time; a supervisor reopens the port when
  the USB adapter disappears and comes back (the device node vanishes or is re-created).
* :class:`Ch340RelayDriver` speaks the 4-byte frames of CH340 USB relay boards; they never
  answer, so "sent" is all we can know.
* :class:`LineProtocolDriver` speaks a line-based controller protocol
  (``OPEN <gate> <ms>`` → ``OK`` / ``ERR <code>``) with a timeout and a bounded retry.
  Controllers with a door-contact input also report, unsolicited, ``DOOR <gate> OPEN`` and
  ``DOOR <gate> CLOSED``; the line notes them (between and during conversations) so a
  granted entry can be confirmed as having physically happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

import serial

from access.settings import GateConfig

log = logging.getLogger(__name__)

T = TypeVar("T")
LineListener = Callable[["SerialLine", bool, str], Awaitable[None]]

MAX_REPLY_BYTES = 128
# What serial_for_url opens: a real port, or a URL handler (loop://) with the same methods.
Port = serial.Serial


class LineDown(Exception):
    """The serial line is not usable right now."""


class GateRefused(Exception):
    """The controller answered, but not with OK (or not at all, after every retry)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class SerialLine:
    def __init__(self, url: str, *, baudrate: int, reconnect_interval_s: float) -> None:
        self.url = url
        self.baudrate = baudrate
        self._reconnect_interval_s = reconnect_interval_s
        self._port: Port | None = None
        self._opened_target: str | None = None
        # One thread per line: the wire carries one conversation at a time anyway.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"serial-{os.path.basename(url)}")
        self._supervisor: asyncio.Task[None] | None = None
        self._listeners: list[LineListener] = []
        self._on_connect: list[Callable[[Port], None]] = []
        self.detail = "not opened yet"
        # Door reports by gate number: written on the line thread, read on the loop
        # (single float/bool stores: no lock needed under the GIL).
        self.reads_door_reports = False
        self._door_opened_at: dict[int, float] = {}
        self._door_open: dict[int, bool] = {}

    def note(self, text: str) -> bool:
        """Take an unsolicited controller line; True if it was a door report."""
        parts = text.split()
        if len(parts) != 3 or parts[0] != "DOOR" or not parts[1].isdigit() or parts[2] not in ("OPEN", "CLOSED"):
            return False
        number, opened = int(parts[1]), parts[2] == "OPEN"
        self._door_open[number] = opened
        if opened:
            self._door_opened_at[number] = time.monotonic()
        return True

    def door_opened_since(self, number: int, since: float) -> bool:
        return self._door_opened_at.get(number, -1.0) >= since

    def door_is_open(self, number: int) -> bool | None:
        return self._door_open.get(number)

    def drain(self, port: Port) -> None:
        """Consume whatever is waiting (line thread): door reports are noted, anything
        else (answers to timed-out commands, noise) is dropped; a part line too."""
        waiting = port.in_waiting
        if not waiting:
            return
        raw = port.read(min(waiting, 16 * MAX_REPLY_BYTES))
        if port.in_waiting > 16 * MAX_REPLY_BYTES:
            port.reset_input_buffer()
        for line in raw.split(b"\n")[:-1]:
            self.note(line.decode("ascii", errors="replace").strip())

    @property
    def up(self) -> bool:
        return self._port is not None

    def add_listener(self, listener: LineListener) -> None:
        self._listeners.append(listener)

    def on_connect(self, action: Callable[[Port], None]) -> None:
        """Run ``action`` on the line thread every time the port (re)opens."""
        self._on_connect.append(action)

    async def start(self) -> None:
        await self._try_open()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"serial-supervisor-{self.url}")

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=True)

    async def run(self, conversation: Callable[[Port], T]) -> T:
        """Run ``conversation`` with the open port on the line thread. An I/O error takes
        the line down (the supervisor reopens it) and raises :class:`LineDown`."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, self._converse, conversation)
        except (serial.SerialException, OSError) as exc:
            await self._went_down(f"{type(exc).__name__}: {exc}")
            raise LineDown(self.detail) from exc

    def _converse(self, conversation: Callable[[Port], T]) -> T:
        port = self._port
        if port is None:
            raise serial.SerialException(self.detail)
        return conversation(port)

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(self._reconnect_interval_s)
            try:
                if self._port is None:
                    await self._try_open()
                else:
                    await self.run(self._check)
            except LineDown:
                pass  # already recorded; try again next round
            except Exception:
                log.exception("serial supervisor error on %s", self.url)

    def _check(self, port: Port) -> None:
        """A USB adapter that was unplugged, or re-plugged as a new device node, shows as
        a missing or re-pointed path; a dead pty shows as an I/O error."""
        if self._opened_target is not None and _target(self.url) != self._opened_target:
            raise serial.SerialException("device node disappeared or was replaced")
        if self.reads_door_reports:
            self.drain(port)  # door reports arrive between commands too
        elif port.in_waiting > 4 * MAX_REPLY_BYTES:
            port.reset_input_buffer()  # chatter nobody asked for must not pile up

    async def _try_open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._thread, self._open)
        except (serial.SerialException, OSError, ValueError) as exc:
            self.detail = f"cannot open: {exc}"
            return
        self.detail = "open"
        log.info("serial line %s is up", self.url)
        await self._notify(True)

    def _open(self) -> None:
        target = _target(self.url)
        port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0.5, write_timeout=1.0)
        try:
            for action in self._on_connect:
                action(port)
        except BaseException:
            port.close()
            raise
        self._port, self._opened_target = port, target

    def _close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()

    async def _went_down(self, detail: str) -> None:
        if self._port is None:
            return
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self.detail = detail
        log.warning("serial line %s is down: %s", self.url, detail)
        await self._notify(False)

    async def _notify(self, up: bool) -> None:
        for listener in self._listeners:
            try:
                await listener(self, up, self.detail)
            except Exception:
                log.exception("serial line listener failed")


def _target(url: str) -> str | None:
    """What a device path resolves to (None if missing); URLs such as loop:// resolve to themselves."""
    if "://" in url:
        return url
    return os.path.realpath(url) if os.path.exists(url) else None


class GateDriver(Protocol):
    line: SerialLine

    async def open(self, open_ms: int) -> None:
        """Open the gate for ``open_ms``; returns once the command is on the wire (and
        acknowledged, for protocols that acknowledge). Raises LineDown or GateRefused."""
        ...

    async def close(self) -> None:
        """Leave the gate closed (shutdown)."""
        ...


def relay_frame(channel: int, on: bool) -> bytes:
    """A CH340 relay board frame: start byte, channel, state, and their 8-bit sum."""
    state = 1 if on else 0
    return bytes((0xA0, channel, state, (0xA0 + channel + state) & 0xFF))


class Ch340RelayDriver:
    """Pulses one relay channel: on, hold for the open time, off. The board never answers.
    A new open during a pulse extends it; a line that comes back switches the relay off,
    so a drop in mid-pulse cannot leave the door held open."""

    def __init__(self, line: SerialLine, channel: int) -> None:
        self.line = line
        self.channel = channel
        self._release: asyncio.Task[None] | None = None
        line.on_connect(lambda port: _write(port, relay_frame(channel, on=False)))

    async def open(self, open_ms: int) -> None:
        on = relay_frame(self.channel, on=True)
        await self.line.run(lambda port: _write(port, on))
        if self._release is not None:
            self._release.cancel()
        self._release = asyncio.create_task(self._release_after(open_ms / 1000))

    async def _release_after(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        off = relay_frame(self.channel, on=False)
        with contextlib.suppress(LineDown):
            await self.line.run(lambda port: _write(port, off))

    async def close(self) -> None:
        if self._release is not None and not self._release.done():
            self._release.cancel()
            off = relay_frame(self.channel, on=False)
            with contextlib.suppress(LineDown):
                await self.line.run(lambda port: _write(port, off))


def _write(port: Port, frame: bytes) -> None:
    # Whatever the board or line noise sent us is of no interest, and must not pile up.
    if port.in_waiting:
        port.reset_input_buffer()
    port.write(frame)
    port.flush()


class LineProtocolDriver:
    """``OPEN <gate> <ms>\\n`` → ``OK`` or ``ERR <code>``. Lines that are neither (noise,
    a reboot banner) are skipped; no answer in time, a half line, or ERR is retried a
    bounded number of times, then refused with the last code."""

    def __init__(
        self, line: SerialLine, gate_number: int, *, timeout_ms: int, retries: int, door_contact: bool = False
    ) -> None:
        self.line = line
        self.gate_number = gate_number
        self.timeout_s = timeout_ms / 1000
        self.retries = retries
        if door_contact:
            line.reads_door_reports = True

    async def open(self, open_ms: int) -> None:
        command = f"OPEN {self.gate_number} {open_ms}\n".encode("ascii")
        code = "no_answer"
        for _attempt in range(1 + self.retries):
            answer = await self.line.run(lambda port: self._exchange(port, command))
            if answer == "OK":
                return
            code = answer
        raise GateRefused(code)

    async def close(self) -> None:
        return None  # the controller closes the gate itself after the open time

    def _exchange(self, port: Port, command: bytes) -> str:
        # An answer to an earlier, timed-out command is stale; a door report is not.
        if self.line.reads_door_reports:
            self.line.drain(port)
        else:
            port.reset_input_buffer()
        port.write(command)
        port.flush()
        deadline = time.monotonic() + self.timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            port.timeout = remaining
            raw = port.read_until(b"\n", MAX_REPLY_BYTES)
            if not raw.endswith(b"\n"):
                return "no_answer" if not raw else "half_answer"
            text = raw.decode("ascii", errors="replace").strip()
            if text == "OK":
                return "OK"
            if text.startswith("ERR "):
                detail = text[4:].strip()
                return f"err_{detail}" if detail.isalnum() and len(detail) <= 16 else "err_unreadable"
            if self.line.note(text):
                continue
            log.debug("skipping unexpected line from gate controller: %r", raw[:40])
        return "no_answer"


@dataclass
class Gate:
    config: GateConfig
    driver: GateDriver

    @property
    def line_up(self) -> bool:
        return self.driver.line.up


def build_gates(
    configs: list[GateConfig], *, reconnect_interval_s: float, line_timeout_ms: int, line_retries: int
) -> tuple[dict[str, Gate], list[SerialLine]]:
    """Drivers for the configured gates; gates wired to the same port share one line."""
    lines: dict[str, SerialLine] = {}
    gates: dict[str, Gate] = {}
    for config in configs:
        line = lines.get(config.port)
        if line is None:
            line = SerialLine(config.port, baudrate=config.baudrate, reconnect_interval_s=reconnect_interval_s)
            lines[config.port] = line
        driver: GateDriver
        if config.driver == "ch340":
            driver = Ch340RelayDriver(line, config.channel)
        else:
            driver = LineProtocolDriver(
                line, config.channel, timeout_ms=line_timeout_ms, retries=line_retries, door_contact=config.door_contact
            )
        gates[config.gate_id] = Gate(config, driver)
    return gates, list(lines.values())
