"""The heartbeat server over real TCP: good devices, and the ones that misbehave —
malformed, oversized, unauthenticated, slow, flooding — none of which hurts the others;
and thousands of devices connected at once."""

from __future__ import annotations

import asyncio
import json

import pytest

from common.observability import Metrics
from monitoring.heartbeat import Admission, Beat, HeartbeatServer, Limits

TOKEN = "s" * 32


@pytest.fixture
async def server():
    beats: list[tuple[str, Beat]] = []

    async def authenticate(device_id: str, token: str) -> Admission | None:
        return Admission() if token == TOKEN and device_id.startswith("dev-") else None

    async def on_beat(device_id: str, beat: Beat) -> None:
        beats.append((device_id, beat))

    limits = Limits(max_line_bytes=1024, auth_timeout_s=0.5, messages_per_s=5, burst=5)
    heartbeat = HeartbeatServer(authenticate=authenticate, on_beat=on_beat, limits=limits, metrics=Metrics())
    port = await heartbeat.start("127.0.0.1", 0)
    yield heartbeat, port, beats
    await heartbeat.stop()


async def connect(port: int, device_id: str = "dev-1", token: str = TOKEN):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(json.dumps({"device_id": device_id, "token": token}).encode() + b"\n")
    await writer.drain()
    return reader, writer, json.loads(await reader.readline())


async def send(reader, writer, payload: bytes) -> dict:
    writer.write(payload)
    await writer.drain()
    line = await reader.readline()
    return json.loads(line) if line else {}


async def test_an_authenticated_device_sends_heartbeats(server):
    _, port, beats = server
    reader, writer, hello = await connect(port)
    assert hello == {"ok": True}
    answer = await send(reader, writer, b'{"status": "ok", "readings": {"belt_temp_c": 41.5}}\n')
    assert answer == {"ok": True}
    assert beats[0][0] == "dev-1"
    assert beats[0][1].readings == {"belt_temp_c": 41.5}
    writer.close()


async def test_misbehaving_clients_are_refused_with_a_reason(server):
    heartbeat, port, beats = server
    _, _writer_bad_token, hello = await connect(port, token="x" * 32)
    assert hello == {"error": "unauthenticated"}
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await send(reader, writer, b"not json\n") == {"error": "malformed_hello"}
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await send(reader, writer, b"x" * 5000 + b"\n") == {"error": "line_too_long"}
    # Slow loris: half a hello, then nothing.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b'{"device_id": "dev-')
    await writer.drain()
    assert json.loads(await reader.readline()) == {"error": "timeout"}
    # Malformed heartbeats: told, then cut off after three.
    reader, writer, _ = await connect(port)
    assert (await send(reader, writer, b'{"status": "ON FIRE!"}\n'))["error"] == "malformed"
    assert (await send(reader, writer, b"[]\n"))["error"] == "malformed"
    assert await send(reader, writer, b"{}\n") == {"error": "malformed"}
    assert await reader.read() == b""
    # A flood: the bucket empties and the connection ends.
    reader, writer, _ = await connect(port, "dev-flood")
    writer.write(b'{"status": "ok"}\n' * 50)
    await writer.drain()
    answers = [json.loads(line) for line in (await reader.read()).splitlines()]
    assert answers[-1] == {"error": "flood"}
    assert len([beat for beat in beats if beat[0] == "dev-flood"]) <= 6
    # And a well-behaved device is unaffected by all of that.
    reader, writer, hello = await connect(port, "dev-good")
    assert await send(reader, writer, b'{"status": "ok"}\n') == {"ok": True}
    assert heartbeat.open_connections >= 1


async def test_a_silent_device_is_let_go_after_its_own_periods_or_the_floor():
    async def authenticate(device_id: str, token: str) -> Admission | None:
        return Admission(heartbeat_period_s=0.5 if device_id == "dev-slow" else None)

    async def on_beat(device_id: str, beat: Beat) -> None:
        pass

    heartbeat = HeartbeatServer(
        authenticate=authenticate, on_beat=on_beat, limits=Limits(idle_timeout_s=0.4), metrics=Metrics()
    )
    port = await heartbeat.start("127.0.0.1", 0)
    ordinary_reader, _ordinary_writer, _ = await connect(port, "dev-ordinary")
    slow_reader, slow_writer, _ = await connect(port, "dev-slow")
    # No period: hung up on after the floor (0.4 s). A period of 0.5 s: three of them.
    assert json.loads(await asyncio.wait_for(ordinary_reader.readline(), 2.0)) == {"error": "timeout"}
    await asyncio.sleep(0.5)
    assert await send(slow_reader, slow_writer, b'{"status": "ok"}\n') == {"ok": True}
    started = asyncio.get_running_loop().time()
    assert json.loads(await asyncio.wait_for(slow_reader.readline(), 3.0)) == {"error": "timeout"}
    assert asyncio.get_running_loop().time() - started >= 1.4
    await heartbeat.stop()


async def test_a_device_that_connects_again_replaces_its_old_connection_without_a_hang_up():
    # A link that died without a FIN leaves the old socket open on our side; the device
    # comes back on a new one. The old one goes at once, and is not reported as the device
    # hanging up (that would make the watch suspect a device that is right there).
    presence: list[tuple[str, bool]] = []

    async def authenticate(device_id: str, token: str) -> Admission | None:
        return Admission()

    async def on_beat(device_id: str, beat: Beat) -> None:
        pass

    heartbeat = HeartbeatServer(
        authenticate=authenticate,
        on_beat=on_beat,
        limits=Limits(),
        metrics=Metrics(),
        on_presence=lambda device_id, connected: presence.append((device_id, connected)),
    )
    port = await heartbeat.start("127.0.0.1", 0)
    try:
        old_reader, old_writer, _ = await connect(port, "dev-1")
        reader, writer, hello = await connect(port, "dev-1")
        assert hello == {"ok": True}
        assert json.loads(await asyncio.wait_for(old_reader.read(), 2.0)) == {"error": "replaced"}
        old_writer.close()
        assert await send(reader, writer, b'{"status": "ok"}\n') == {"ok": True}
        assert heartbeat.open_connections == 1
        assert presence == [("dev-1", True), ("dev-1", True)]
        # The device hanging up on its newest connection is reported, as before.
        writer.close()
        await asyncio.wait_for(_until(lambda: ("dev-1", False) in presence), 2.0)
    finally:
        await heartbeat.stop()


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.01)


@pytest.mark.slow
async def test_five_thousand_devices_at_once(server):
    heartbeat, port, beats = server
    semaphore = asyncio.Semaphore(500)  # connect in waves; all stay open together

    async def device(n: int):
        async with semaphore:
            reader, writer, hello = await connect(port, f"dev-{n}")
            assert hello == {"ok": True}
        return reader, writer

    connections = await asyncio.gather(*(device(n) for n in range(5000)))
    assert heartbeat.open_connections == 5000
    answers = await asyncio.gather(*(send(reader, writer, b'{"status": "ok"}\n') for reader, writer in connections))
    assert all(answer == {"ok": True} for answer in answers)
    assert len({device_id for device_id, _ in beats}) == 5000
    for _, writer in connections:
        writer.close()


async def test_an_answer_to_a_device_already_gone_is_a_hang_up_on_either_loop():
    # uvloop raises RuntimeError for a write to a closed connection where asyncio fails the
    # drain with ConnectionResetError; the server treats both as the device hanging up.
    from monitoring.heartbeat import _send

    server = await asyncio.start_server(lambda _reader, _writer: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    await writer.wait_closed()
    with pytest.raises(ConnectionResetError):
        await _send(writer, {"ok": True})
    server.close()
    await server.wait_closed()
