"""The virtual gate: access's own drivers talk to its pty like to a USB adapter."""

from __future__ import annotations

from access.gates import Ch340RelayDriver, LineProtocolDriver, SerialLine
from access.virtualgate import VirtualGate
from tests.support.waiting import eventually


async def test_line_protocol_opens_reports_and_closes_after_the_open_time():
    reports: list[tuple[str, dict]] = []
    peer = VirtualGate("door", protocol="line", report=lambda message, fields: reports.append((message, fields)))
    peer.start()
    line = SerialLine(peer.path, baudrate=9600, reconnect_interval_s=0.2)
    try:
        await line.start()
        assert line.up
        driver = LineProtocolDriver(line, 2, timeout_ms=500, retries=0)
        await driver.open(300)  # returns only after the peer answered OK
        assert peer.commands == ["OPEN 2 300"]
        assert peer.relays == {2: True}
        await eventually(lambda: peer.relays[2] is False, timeout=3, every=0.01)
        messages = [message for message, _ in reports]
        assert any("#2: OPEN for 300 ms" in message and "relay ON" in message for message in messages)
        assert any("#2: CLOSE (open time over), relay OFF" in message for message in messages)
    finally:
        await line.stop()
        peer.stop()


async def test_unknown_commands_are_refused_on_the_wire():
    peer = VirtualGate("door", protocol="line", report=lambda *_: None).start()
    line = SerialLine(peer.path, baudrate=9600, reconnect_interval_s=0.2)
    try:
        await line.start()

        def ask(port):
            port.write(b"SPIN 1\n")
            port.timeout = 1
            return port.read_until(b"\n")

        assert await line.run(ask) == b"ERR unknown\n"
    finally:
        await line.stop()
        peer.stop()


async def test_relay_frames_switch_the_relay():
    peer = VirtualGate("relay", protocol="ch340", report=lambda *_: None).start()
    line = SerialLine(peer.path, baudrate=9600, reconnect_interval_s=0.2)
    try:
        driver = Ch340RelayDriver(line, 3)
        await line.start()
        await eventually(lambda: "RELAY 3 OFF" in peer.commands, timeout=3, every=0.01)  # switched off on connect
        await driver.open(200)
        await eventually(lambda: peer.relays.get(3) is True, timeout=3, every=0.01)
        await eventually(lambda: peer.relays.get(3) is False, timeout=3, every=0.01)
    finally:
        await line.stop()
        peer.stop()
