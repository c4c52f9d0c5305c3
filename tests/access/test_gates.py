"""Gate drivers over a real serial line (socat pty pair): frames byte for byte, the
controller protocol's acknowledgements, retries and refusals, garbage on the line, and a
USB adapter that is pulled and plugged back in."""

from __future__ import annotations

import pytest
import serial

from access.gates import Ch340RelayDriver, GateRefused, LineDown, LineProtocolDriver, SerialLine, relay_frame
from tests.support.serialgate import GateSimulator, SocatPair
from tests.support.waiting import eventually


@pytest.fixture
def pair(tmp_path):
    pair = SocatPair(tmp_path).start()
    yield pair
    pair.stop()


@pytest.fixture
async def line(pair):
    line = SerialLine(pair.ours, baudrate=9600, reconnect_interval_s=0.1)
    await line.start()
    yield line
    await line.stop()


def simulator(pair, protocol):
    return GateSimulator(pair.theirs, protocol).start()


def test_relay_frames_match_the_board_documentation():
    assert relay_frame(1, on=True) == bytes.fromhex("A00101A2")
    assert relay_frame(1, on=False) == bytes.fromhex("A00100A1")
    assert relay_frame(4, on=True) == bytes.fromhex("A00401A5")


async def test_relay_pulse_is_on_then_off_after_the_open_time(pair, line):
    device = simulator(pair, "ch340")
    try:
        driver = Ch340RelayDriver(line, channel=2)
        await driver.open(300)
        await eventually(lambda: len([f for f in device.frames if f.channel == 2]) >= 2, timeout=3)
        on, off = [frame for frame in device.frames if frame.channel == 2][-2:]
        assert (on.on, off.on) == (True, False)
        assert 0.25 <= off.at - on.at <= 0.6
        assert device.bad_bytes == 0
        assert bytes(device.received) == bytes.fromhex("A00201A3A00200A2")
    finally:
        device.stop()


async def test_relay_line_ignores_noise_from_the_board(pair, line):
    device = simulator(pair, "ch340")
    try:
        device.send(b"\xde\xad\xbe\xef" * 10)
        driver = Ch340RelayDriver(line, channel=1)
        await driver.open(100)
        await eventually(lambda: len(device.on_frames(1)) == 1, timeout=3)
    finally:
        device.stop()


async def test_controller_acknowledges_and_garbage_is_skipped(pair, line):
    device = simulator(pair, "line")
    try:
        driver = LineProtocolDriver(line, 3, timeout_ms=300, retries=2)
        await driver.open(2500)
        device.replies.extend(["garbage"])
        await driver.open(2500)
        assert [text for _, text in device.commands] == ["OPEN 3 2500", "OPEN 3 2500"]
    finally:
        device.stop()


async def test_controller_errors_and_silence_are_retried_then_refused(pair, line):
    device = simulator(pair, "line")
    try:
        driver = LineProtocolDriver(line, 1, timeout_ms=150, retries=2)
        device.replies.extend(["ERR 7", "silent"])
        await driver.open(1000)  # third attempt answers OK
        assert len(device.commands) == 3
        device.replies.extend(["ERR 9", "half", "ERR 12"])
        with pytest.raises(GateRefused) as refused:
            await driver.open(1000)
        assert refused.value.code == "err_12"
        assert len(device.commands) == 6
    finally:
        device.stop()


async def test_unplugged_adapter_goes_down_and_comes_back(pair, line):
    changes: list[bool] = []

    async def record(_line, up, _detail):
        changes.append(up)

    line.add_listener(record)
    driver = Ch340RelayDriver(line, channel=1)
    assert line.up
    pair.unplug()
    with pytest.raises(LineDown):
        await driver.open(100)
    assert not line.up
    pair.start()
    await eventually(lambda: line.up, timeout=5)
    device = simulator(pair, "ch340")
    try:
        await driver.open(100)
        await eventually(lambda: len(device.on_frames(1)) == 1, timeout=3)
    finally:
        device.stop()
    assert changes == [False, True]


async def test_a_missing_device_is_down_until_it_appears(tmp_path):
    pair = SocatPair(tmp_path, "late")
    line = SerialLine(pair.ours, baudrate=9600, reconnect_interval_s=0.1)
    await line.start()
    try:
        assert not line.up
        with pytest.raises(LineDown):
            await line.run(lambda port: port.write(b"x"))
        pair.start()
        await eventually(lambda: line.up, timeout=5)
    finally:
        await line.stop()
        pair.stop()


async def test_loopback_url_works_for_quick_checks():
    line = SerialLine("loop://", baudrate=9600, reconnect_interval_s=0.1)
    await line.start()
    try:

        def echo(port: serial.SerialBase) -> bytes:
            port.write(b"abc")
            return bytes(port.read(3))

        assert await line.run(echo) == b"abc"
    finally:
        await line.stop()
