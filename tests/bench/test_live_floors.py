"""The live benchmark's two bare floors (bench/_live.py) speak what its load generators
expect, over real sockets: a runner's frame reaches each of the run's watchers verbatim,
the send calls are counted, and a close is answered."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from bench._live import bare_picows_server_process, bare_server_process
from tests.support.apps import free_port


@pytest.fixture(params=[bare_server_process, bare_picows_server_process], ids=["websockets", "picows"])
def floor(request: pytest.FixtureRequest) -> Iterator[tuple[int, Any]]:
    server: Callable[[int, Any], None] = request.param
    # Spawned, not forked: the test worker has threads of its own.
    context = multiprocessing.get_context("spawn")
    port = free_port()
    ready, ready_end = context.Pipe()
    process = context.Process(target=server, args=(port, ready_end), daemon=True)
    process.start()
    ready_end.close()  # the child's end: if the child dies, the waits below end at once
    try:
        assert ready.poll(30), "the floor server did not come up"
        assert ready.recv() == "up"
        yield port, ready
    finally:
        process.kill()
        process.join(10)


async def test_a_runner_frame_reaches_every_watcher_verbatim_and_is_counted(floor: tuple[int, Any]) -> None:
    port, ready = floor
    base = f"ws://127.0.0.1:{port}"
    async with connect(f"{base}/ws/runs", ping_interval=None) as runner:
        started = json.loads(await runner.recv())
        assert started["type"] == "started"
        watchers = [await connect(f"{base}/ws/runs/{started['run_id']}/watch", ping_interval=None) for _ in range(3)]
        for watcher in watchers:
            assert json.loads(await watcher.recv())["type"] == "watching"
        frame = json.dumps({"type": "point", "t": 1.5, "lat": 37.5, "lon": 127.0, "acc": 5.0})
        await runner.send(frame)
        received = await asyncio.wait_for(asyncio.gather(*(watcher.recv() for watcher in watchers)), 5)
        assert received == [frame, frame, frame]
        for watcher in watchers:
            await watcher.close()
            assert watcher.close_code == 1000  # the server answered the close
    ready.send("report")
    assert ready.poll(10), "the floor server did not report"
    counters = ready.recv()
    assert counters["frames"] == 1
    assert counters["deliveries"] == 3
