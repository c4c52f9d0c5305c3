"""Live sockets are pinged only when quiet both ways: traffic in either direction keeps
pings away, a quiet socket that answers stays open, one that stops answering is closed
with 1011, and every socket's TCP gives up on unacknowledged data after interval +
timeout. Real sockets on loopback, the real library on both ends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from running.live_groups import ConnectionGroup
from running.live_keepalive import Keepalive
from tests.running.conftest import member, receive, track_points

INTERVAL_S = 0.2
TIMEOUT_S = 0.3


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
                liveness.outbound = group
                group.connections.add(connection)
            async for _ in connection:
                liveness.heard_at = time.monotonic()
        except ConnectionClosed:
            pass  # the keep-alive closed it: what one test waits for
        finally:
            group.connections.discard(connection)
            keepalive.forget(connection)

    keepalive.start()
    try:
        async with serve(handler, "127.0.0.1", 0, ping_interval=None, close_timeout=0.5, compression=None) as server:
            yield next(iter(server.sockets)).getsockname()[1], accepted
    finally:
        await keepalive.stop()


async def read_into(client: ClientConnection, heard: list[str | bytes]) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for message in client:
            heard.append(message)


async def read_until_closed(client: ClientConnection) -> None:
    while True:
        await asyncio.wait_for(client.recv(), 5)


async def test_traffic_either_way_keeps_pings_away_and_a_quiet_socket_is_pinged_and_stays_open():
    keepalive = Keepalive(interval_s=INTERVAL_S, timeout_s=TIMEOUT_S)
    group = ConnectionGroup()
    async with keepalive_server(keepalive, group) as (port, _):
        talker = await connect(f"ws://127.0.0.1:{port}/talk", ping_interval=None)
        listener = await connect(f"ws://127.0.0.1:{port}/listen", ping_interval=None)
        heard: list[str | bytes] = []
        reading = asyncio.ensure_future(read_into(listener, heard))  # a watcher reads what comes
        await asyncio.sleep(0.05)
        for _ in range(20):  # 1 s, five intervals: a frame each way every 50 ms
            await talker.send("point")
            group.deliver("run.x", '{"type":"position"}')
            await asyncio.sleep(0.05)
        assert keepalive.pings_sent == 0
        assert heard[0] == '{"type":"position"}'
        quiet = await connect(f"ws://127.0.0.1:{port}/quiet", ping_interval=None)
        await asyncio.sleep(INTERVAL_S * 3)
        # The quiet socket (and now the other two) were pinged, answered, and stay open.
        assert keepalive.pings_sent >= 3
        assert keepalive.timed_out == 0
        await quiet.send("still here")
        await talker.send("still here")
        for client in (talker, listener, quiet):
            await client.close()
        await reading


async def test_a_quiet_socket_that_stops_answering_is_closed_with_1011():
    keepalive = Keepalive(interval_s=INTERVAL_S, timeout_s=TIMEOUT_S)
    async with keepalive_server(keepalive, ConnectionGroup()) as (port, accepted):
        client = await connect(f"ws://127.0.0.1:{port}/quiet", ping_interval=None)
        client.transport.pause_reading()  # a phone gone: it reads nothing, answers nothing
        began = time.monotonic()
        await asyncio.wait_for(accepted[0].wait_closed(), 5)
        took = time.monotonic() - began
        assert accepted[0].protocol.close_sent is not None
        assert accepted[0].protocol.close_sent.code == 1011
        assert accepted[0].protocol.close_sent.reason == "keepalive ping timeout"
        assert keepalive.timed_out == 1
        # Quiet for an interval (seen at a sweep a quarter interval apart), then the timeout.
        assert INTERVAL_S + TIMEOUT_S - 0.05 <= took <= INTERVAL_S * 1.5 + TIMEOUT_S + 1.0
        client.transport.abort()


async def test_every_watched_socket_gives_up_on_unacknowledged_data_after_interval_and_timeout():
    keepalive = Keepalive(interval_s=20, timeout_s=25)
    async with (
        keepalive_server(keepalive, ConnectionGroup()) as (port, accepted),
        connect(f"ws://127.0.0.1:{port}/quiet", ping_interval=None),
    ):
        await asyncio.sleep(0.05)
        sock = accepted[0].transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 45_000


async def test_the_live_server_pings_a_quiet_watcher_but_not_a_streaming_run(open_running):
    runner, friend, idle_runner, idle_friend = member(), member(), member(), member()
    async with open_running(running_live_ping_interval_s=INTERVAL_S, running_live_ping_timeout_s=TIMEOUT_S) as running:
        await running.befriend(runner, friend)
        await running.befriend(idle_runner, idle_friend)
        keepalive = running.app.state.live.keepalive
        points = track_points(seconds=30)
        async with running.socket("/ws/runs", runner) as streaming:
            run_id = (await receive(streaming, "started"))["run_id"]
            async with running.socket(f"/ws/runs/{run_id}/watch", friend) as watcher:
                await receive(watcher, "watching")
                heard: list[str | bytes] = []
                answers: list[str | bytes] = []  # the runner's stats, read as a phone does
                reading = asyncio.gather(read_into(watcher, heard), read_into(streaming, answers))
                before = keepalive.pings_sent
                for point in points[:15]:  # 1.5 s, a point every 100 ms: 7 intervals
                    await streaming.send(json.dumps({"type": "point", **point}))
                    await asyncio.sleep(0.1)
                # The runner talks, its watcher is written to: neither is pinged.
                assert keepalive.pings_sent == before
                assert any(json.loads(message)["type"] == "position" for message in heard)
        await reading
        async with running.socket("/ws/runs", idle_runner) as resting:
            idle_run = (await receive(resting, "started"))["run_id"]
            async with running.socket(f"/ws/runs/{idle_run}/watch", idle_friend) as silent:
                await receive(silent, "watching")
                silent.transport.pause_reading()
                await asyncio.sleep(INTERVAL_S * 1.5 + TIMEOUT_S + 0.5)
                assert keepalive.pings_sent > before
                assert keepalive.timed_out >= 1
                silent.transport.resume_reading()
                with pytest.raises(ConnectionClosed) as closed:
                    await read_until_closed(silent)
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1011
