"""Live sockets are pinged only when quiet both ways: traffic in either direction keeps
pings away, a quiet socket that answers stays open, one that stops answering is closed
with 1011, and every socket's TCP gives up on unacknowledged data after interval +
timeout. Real sockets on loopback, the real library on both ends; each client counts the
pings it gets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from running.live_groups import ConnectionGroup
from running.live_keepalive import Keepalive
from tests.running.conftest import Member, member, receive, track_points

# Long enough that a busy machine's stalls do not make a streaming socket look quiet.
INTERVAL_S = 0.5
TIMEOUT_S = 0.3
CLOSE_TIMEOUT_S = 0.3


class PingCounting(ClientConnection):
    """A client that counts the pings it is sent (the library answers them itself)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pings = 0

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame) and event.opcode is Opcode.PING:
            self.pings += 1
        super().process_event(event)


async def client(url: str, who: Member | None = None) -> PingCounting:
    connection = await connect(
        url, additional_headers=who.headers if who else None, ping_interval=None, create_connection=PingCounting
    )
    assert isinstance(connection, PingCounting)
    return connection


async def read_into(client: ClientConnection, heard: list[str | bytes]) -> None:
    """Read as a phone does: everything, as it comes."""
    with contextlib.suppress(ConnectionClosed):
        async for message in client:
            heard.append(message)


async def read_until_closed(client: ClientConnection) -> None:
    while True:
        await asyncio.wait_for(client.recv(), 5)


@asynccontextmanager
async def keepalive_server(
    keepalive: Keepalive, group: ConnectionGroup
) -> AsyncIterator[tuple[int, list[ServerConnection]]]:
    """A server whose sockets the keep-alive watches: a path of /talk reads frames (its
    client talks), /listen joins ``group`` (it is written to), anything else is left quiet."""
    accepted: list[ServerConnection] = []

    async def handler(connection: ServerConnection) -> None:
        accepted.append(connection)
        liveness = keepalive.watch(connection)
        path = connection.request.path if connection.request else "/"
        try:
            if path == "/listen":
                group.connections.add(connection)
                liveness.outbound = group
            async for _ in connection:
                liveness.heard_at = time.monotonic()
        except ConnectionClosed:
            pass  # the keep-alive closed it: what one test waits for
        finally:
            group.connections.discard(connection)
            keepalive.forget(connection)

    async with serve(
        handler, "127.0.0.1", 0, ping_interval=None, close_timeout=CLOSE_TIMEOUT_S, compression=None
    ) as server:
        await keepalive.start()
        try:
            yield next(iter(server.sockets)).getsockname()[1], accepted
        finally:
            await keepalive.stop()


def new_keepalive() -> Keepalive:
    return Keepalive(interval_s=INTERVAL_S, timeout_s=TIMEOUT_S, close_timeout_s=CLOSE_TIMEOUT_S)


async def test_traffic_either_way_keeps_pings_away_and_a_quiet_socket_is_pinged_and_stays_open():
    keepalive = new_keepalive()
    group = ConnectionGroup()
    async with keepalive_server(keepalive, group) as (port, _):
        talker = await client(f"ws://127.0.0.1:{port}/talk")
        listener = await client(f"ws://127.0.0.1:{port}/listen")
        heard: list[str | bytes] = []
        reading = asyncio.ensure_future(read_into(listener, heard))
        quiet = await client(f"ws://127.0.0.1:{port}/quiet")
        for _ in range(30):  # 1.5 s, three intervals: a frame each way every 50 ms
            await talker.send("point")
            group.deliver("run.x", '{"type":"position"}')
            await asyncio.sleep(0.05)
        assert (talker.pings, listener.pings) == (0, 0)
        assert heard[0] == '{"type":"position"}'
        assert quiet.pings >= 1  # pinged, answered (by the library) ...
        await asyncio.sleep(INTERVAL_S * 2)
        assert quiet.pings >= 2  # ... and pinged again an interval after its pong
        assert keepalive.timed_out == 0
        await quiet.send("still here")
        for each in (talker, listener, quiet):
            await each.close()
        await reading
    assert len(keepalive) == 0


async def test_a_quiet_socket_that_stops_answering_is_closed_with_1011():
    keepalive = new_keepalive()
    async with keepalive_server(keepalive, ConnectionGroup()) as (port, accepted):
        silent = await client(f"ws://127.0.0.1:{port}/quiet")
        silent.transport.pause_reading()  # a phone gone: it reads nothing, answers nothing
        began = time.monotonic()
        try:
            await asyncio.wait_for(accepted[0].wait_closed(), 5)
            took = time.monotonic() - began
            close = accepted[0].protocol.close_sent
            assert close is not None
            assert (close.code, close.reason) == (1011, "keepalive ping timeout")
            assert keepalive.timed_out == 1
            # Quiet for an interval (seen at a sweep, pinged within the next quarter),
            # the pong's timeout, then the close frame's wait for a reply that never comes.
            assert INTERVAL_S + TIMEOUT_S - 0.05 <= took <= INTERVAL_S * 1.5 + TIMEOUT_S + CLOSE_TIMEOUT_S + 1.0
        finally:
            silent.transport.abort()
    assert len(keepalive) == 0


async def test_a_listener_whose_writes_stay_queued_is_pinged_and_closed():
    """Positions keep coming, but its peer reads none: what is written queues up, and
    after an interval of that the socket is treated as quiet."""
    keepalive = new_keepalive()
    group = ConnectionGroup()
    async with keepalive_server(keepalive, group) as (port, accepted):
        stuck = await client(f"ws://127.0.0.1:{port}/listen")
        stuck.transport.pause_reading()
        await asyncio.sleep(0.1)
        server_side = accepted[0]
        sock = server_side.transport.get_extra_info("socket")
        # Small kernel buffers fill at once, so the writes queue in the server process; the
        # kernel's own limit on a zero window set long, so that the keep-alive is what ends it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 60_000)
        stuck.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            payload = json.dumps({"type": "position", "pad": "x" * 60_000})
            deadline = time.monotonic() + 5
            while server_side.state.name == "OPEN" and time.monotonic() < deadline:
                group.deliver("run.x", payload)
                await asyncio.sleep(0.02)
            assert time.monotonic() < deadline, "not closed while positions kept coming"
            await asyncio.wait_for(server_side.wait_closed(), 5)
            assert keepalive.timed_out == 1
        finally:
            stuck.transport.abort()


async def test_every_watched_socket_gives_up_on_unacknowledged_data_after_interval_and_timeout():
    keepalive = Keepalive(interval_s=20, timeout_s=25, close_timeout_s=2)
    async with keepalive_server(keepalive, ConnectionGroup()) as (port, accepted):
        quiet = await client(f"ws://127.0.0.1:{port}/quiet")
        await asyncio.sleep(0.05)
        sock = accepted[0].transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 45_000
        await quiet.close()


async def test_the_live_server_pings_a_quiet_watcher_but_not_a_streaming_run(open_running):
    runner, friend, idle_runner, idle_friend = member(), member(), member(), member()
    async with open_running(running_live_ping_interval_s=INTERVAL_S, running_live_ping_timeout_s=TIMEOUT_S) as running:
        await running.befriend(runner, friend)
        await running.befriend(idle_runner, idle_friend)
        points = track_points(seconds=40)
        streaming = await client(running.live_url + "/ws/runs", runner)
        run_id = (await receive(streaming, "started"))["run_id"]
        watcher = await client(f"{running.live_url}/ws/runs/{run_id}/watch", friend)
        await receive(watcher, "watching")
        await streaming.send(json.dumps({"type": "point", **points[0]}))
        await receive(watcher, "position")
        # Counted from the first position on: before it, both sockets were quiet.
        before = (streaming.pings, watcher.pings)
        heard: list[str | bytes] = []
        answers: list[str | bytes] = []  # the runner's stats, read as a phone does
        reading = asyncio.gather(read_into(watcher, heard), read_into(streaming, answers))
        for point in points[1:31]:  # 3 s, a point every 100 ms: six intervals
            await streaming.send(json.dumps({"type": "point", **point}))
            await asyncio.sleep(0.1)
        # The runner talks, its watcher is written to: neither is pinged.
        assert (streaming.pings, watcher.pings) == before
        assert any(json.loads(message)["type"] == "position" for message in heard)
        await streaming.close()
        await watcher.close()
        await reading

        resting = await client(running.live_url + "/ws/runs", idle_runner)
        idle_run = (await receive(resting, "started"))["run_id"]
        silent = await client(f"{running.live_url}/ws/runs/{idle_run}/watch", idle_friend)
        await receive(silent, "watching")
        silent.transport.pause_reading()
        timed_out = running.app.state.live.keepalive.timed_out
        await asyncio.sleep(INTERVAL_S * 1.5 + TIMEOUT_S + 0.5)
        assert running.app.state.live.keepalive.timed_out == timed_out + 1
        silent.transport.resume_reading()
        with pytest.raises(ConnectionClosed) as closed:
            await read_until_closed(silent)
        assert silent.pings >= 1
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1011
        await resting.close()
