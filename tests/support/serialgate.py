"""A real serial line for tests: a pty pair from socat, and a gate simulator on the far
end that speaks the relay-board or the controller protocol, checks every frame, and can
misbehave on cue."""

from __future__ import annotations

import collections
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import serial

from tests.support.infra import require_tool


class SocatPair:
    """``ours`` is what access opens (the USB adapter); ``theirs`` is the gate's end."""

    def __init__(self, directory: Path, name: str = "gate") -> None:
        require_tool("socat")
        self.ours = str(directory / f"{name}-access")
        self.theirs = str(directory / f"{name}-device")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> SocatPair:
        self._process = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.ours}", f"pty,raw,echo=0,link={self.theirs}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while not (os.path.exists(self.ours) and os.path.exists(self.theirs)):
            if time.monotonic() > deadline:
                raise RuntimeError("socat did not create the pty pair")
            time.sleep(0.01)
        return self

    def unplug(self) -> None:
        """Both ends vanish, as when the USB adapter is pulled."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
        for link in (self.ours, self.theirs):
            if os.path.islink(link):
                os.unlink(link)

    def stop(self) -> None:
        self.unplug()


@dataclass
class Frame:
    at: float
    channel: int
    on: bool


@dataclass
class GateSimulator:
    """The device end. ``protocol`` is "ch340" (records relay frames) or "line" (answers
    ``OPEN`` commands from ``replies``: "OK", "ERR <code>", "garbage", "half", "silent";
    "OK" when the script runs out). A controller with a door contact (``door_opens``)
    reports ``DOOR <gate> OPEN`` and ``DOOR <gate> CLOSED`` after each OK, as a member
    walking through; without it the door stays shut (nobody came)."""

    path: str
    protocol: str
    frames: list[Frame] = field(default_factory=list)
    commands: list[tuple[float, str]] = field(default_factory=list)
    bad_bytes: int = 0
    received: bytearray = field(default_factory=bytearray)  # every byte, for byte-for-byte checks
    replies: collections.deque[str] = field(default_factory=collections.deque)
    door_opens: bool = False
    door_delay_s: float = 0.05
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _port: serial.Serial | None = None

    def start(self) -> GateSimulator:
        self._port = serial.Serial(self.path, 9600, timeout=0.05)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._port is not None:
            self._port.close()

    def send(self, raw: bytes) -> None:
        """Unsolicited bytes from the device (noise, a reboot banner)."""
        assert self._port is not None
        self._port.write(raw)

    def report_door(self, gate: int, opened: bool) -> None:
        """An unsolicited door-contact report."""
        self.send(f"DOOR {gate} {'OPEN' if opened else 'CLOSED'}\n".encode("ascii"))

    def on_frames(self, channel: int) -> list[Frame]:
        return [frame for frame in self.frames if frame.channel == channel and frame.on]

    def _run(self) -> None:
        buffer = b""
        assert self._port is not None
        while not self._stop.is_set():
            try:
                # One byte (or the timeout), then whatever else is waiting: a frame is
                # time-stamped as soon as it arrives, not when a buffer fills.
                chunk = self._port.read(1)
                if chunk and self._port.in_waiting:
                    chunk += self._port.read(self._port.in_waiting)
            except (serial.SerialException, OSError):
                return
            if not chunk:
                continue
            self.received.extend(chunk)
            buffer += chunk
            buffer = self._relay(buffer) if self.protocol == "ch340" else self._controller(buffer)

    def _relay(self, buffer: bytes) -> bytes:
        while buffer:
            if buffer[0] != 0xA0:  # resynchronise on the start byte
                self.bad_bytes += 1
                buffer = buffer[1:]
                continue
            if len(buffer) < 4:
                return buffer
            start, channel, state, checksum = buffer[:4]
            if checksum != (start + channel + state) & 0xFF or state not in (0, 1):
                self.bad_bytes += 1
                buffer = buffer[1:]
                continue
            self.frames.append(Frame(time.monotonic(), channel, state == 1))
            buffer = buffer[4:]
        return buffer

    def _controller(self, buffer: bytes) -> bytes:
        assert self._port is not None
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            text = line.decode("ascii", errors="replace").strip()
            self.commands.append((time.monotonic(), text))
            reply = self.replies.popleft() if self.replies else "OK"
            if reply == "silent":
                continue
            if reply == "garbage":
                self._port.write(b"\x00\xff#boot v2.1\n")
                reply = "OK"
            if reply == "half":
                self._port.write(b"O")
                continue
            self._port.write(reply.encode("ascii") + b"\n")
            words = text.split()
            if reply == "OK" and self.door_opens and len(words) == 3 and words[0] == "OPEN":
                gate = int(words[1])
                # The member pushes the door a moment after the release, on a timer
                # thread so this end keeps answering commands meanwhile.
                timer = threading.Timer(self.door_delay_s, self._walk_through, (gate,))
                timer.daemon = True
                timer.start()
        return buffer

    def _walk_through(self, gate: int) -> None:
        if self._stop.is_set() or self._port is None:
            return
        try:
            self.report_door(gate, True)
            time.sleep(0.02)
            self.report_door(gate, False)
        except (serial.SerialException, OSError):
            pass
