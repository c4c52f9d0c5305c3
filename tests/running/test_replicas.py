"""Two running replicas on one PostgreSQL database and one RabbitMQ: a runner on replica A,
watchers on replica B get every position, in order, through the broker — no sticky
sessions. A run resumed on the other replica continues where it was."""

from __future__ import annotations

import asyncio
import json

import pytest

from common.migrations import upgrade
from running.app import create_app
from tests.running.conftest import Running, member, receive, running_settings, track_points
from tests.support import tokens
from tests.support.apps import asgi_client

pytestmark = pytest.mark.slow


async def test_a_watcher_on_another_replica_gets_every_position_in_order(
    tmp_path, rabbitmq_url, postgres, namespace, broker_cleanup
):
    database = postgres.create("running")
    shared = {
        "broker_url": rabbitmq_url,
        "bus_namespace": namespace,
        "database_urls": {"running": database},
        "outbox_poll_interval_s": 0.2,
    }
    upgrade("running", database)
    replica_a = create_app(running_settings(tmp_path, running_replica="a", **shared), keys=tokens.key_cache())
    replica_b = create_app(running_settings(tmp_path, running_replica="b", **shared), keys=tokens.key_cache())
    runner, friend = member(), member()
    points = track_points(seconds=80)
    async with asgi_client(replica_a) as client_a, asgi_client(replica_b) as client_b:
        a = Running(replica_a, client_a, replica_a.state.kernel.settings)
        b = Running(replica_b, client_b, replica_b.state.kernel.settings)
        await a.befriend(runner, friend)
        async with a.socket("/ws/runs", runner) as socket:
            run_id = (await receive(socket, "started"))["run_id"]
            async with b.socket(f"/ws/runs/{run_id}/watch", friend) as watcher:
                await receive(watcher, "watching")
                await asyncio.sleep(0.2)  # the binding for this run reaches the broker
                for start in range(0, 60, 4):
                    await socket.send(json.dumps({"type": "points", "points": points[start : start + 4]}))
                    await asyncio.sleep(0.05)
                seen = [await receive(watcher, "position", timeout=5) for _ in range(15)]
        assert [message["run_id"] for message in seen] == [run_id] * 15
        times = [message["t"] for message in seen]
        assert times == sorted(times)
        assert len(set(times)) == 15  # none twice
        # The phone reconnects through the gateway and lands on the other replica.
        async with b.socket(f"/ws/runs?run_id={run_id}", runner) as socket:
            resumed = await receive(socket, "started")
            assert resumed["stats"]["points"] > 50
            await socket.send(json.dumps({"type": "points", "points": points[60:]}))
            await socket.send(json.dumps({"type": "finish"}))
            finished = await receive(socket, "finished")
        assert finished["summary"]["points"] >= 75
