"""The live server's broadcast writes one prebuilt frame to every open socket: clients of
the real library read it as the text it was, at every length encoding, and a closed
socket is skipped."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from running.live_groups import broadcast_text


async def test_every_open_socket_reads_the_message_whole_at_every_length():
    connected: list[ServerConnection] = []
    all_in = asyncio.Event()

    async def handler(connection: ServerConnection) -> None:
        connected.append(connection)
        if len(connected) == 3:
            all_in.set()
        await connection.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        clients = [await connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None) for _ in range(3)]
        await asyncio.wait_for(all_in.wait(), 5)
        await clients[2].close()
        await asyncio.sleep(0.1)
        messages = [json.dumps({"n": n, "text": "가" * size}) for n, size in enumerate((10, 300, 70_000))]
        for message in messages:
            broadcast_text(connected, message)
        for client in clients[:2]:
            assert [await asyncio.wait_for(client.recv(), 5) for _ in messages] == messages
        for client in clients[:2]:
            await client.close()
