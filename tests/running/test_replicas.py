"""Two running replicas on one PostgreSQL database and one RabbitMQ: a runner on replica A,
watchers on replica B get every position, in order, through the broker — no sticky
sessions. A run resumed on the other replica continues where it was."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import ClientConnection

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


async def test_a_nearby_query_on_one_replica_sees_runners_streaming_to_another(
    tmp_path, rabbitmq_url, postgres, namespace, broker_cleanup
):
    """Runners' coarse positions cross replicas through the broker: each replica keeps the
    whole nearby index, so a query is answered locally and still sees everyone."""
    database = postgres.create("running")
    shared = {"broker_url": rabbitmq_url, "bus_namespace": namespace, "database_urls": {"running": database}}
    upgrade("running", database)
    replica_a = create_app(running_settings(tmp_path, running_replica="a", **shared), keys=tokens.key_cache())
    replica_b = create_app(running_settings(tmp_path, running_replica="b", **shared), keys=tokens.key_cache())
    on_a, on_b = member(), member()
    course = track_points(seed=2, seconds=20)
    async with asgi_client(replica_a) as client_a, asgi_client(replica_b) as client_b:
        a = Running(replica_a, client_a, replica_a.state.kernel.settings)
        b = Running(replica_b, client_b, replica_b.state.kernel.settings)
        for client, who, name in ((client_a, on_a, "Kim"), (client_b, on_b, "Lee")):
            body = {"display_name": name, "nearby_opt_in": True}
            assert (await client.put("/v1/profile", json=body, headers=who.headers)).status_code == 200
        async with a.socket("/ws/runs", on_a) as runner_a, b.socket("/ws/runs", on_b) as runner_b:
            for socket, shift in ((runner_a, 0.0), (runner_b, 0.002)):
                await receive(socket, "started")
                points = [{**point, "lat": point["lat"] + shift} for point in course]
                await socket.send(json.dumps({"type": "points", "points": points}))
            for socket, other in ((runner_b, "Kim"), (runner_a, "Lee")):
                for _ in range(50):  # the other replica's update crosses the broker
                    await socket.send(json.dumps({"type": "nearby", "radius_m": 1000}))
                    seen = (await receive(socket, "nearby"))["runners"]
                    if seen:
                        break
                    await asyncio.sleep(0.1)
                assert [runner["name"] for runner in seen] == [other]
                assert set(seen[0]) == {"user_id", "name", "lat", "lon", "distance_m"}


async def test_watchers_on_another_replica_get_every_position_sent_after_they_were_told_watching(
    tmp_path, rabbitmq_url, postgres, namespace, broker_cleanup
):
    """Once a watcher has "watching", nothing may be missed: the replica holding the run
    must already know about the interest. Three watchers of one run join the other
    replica at once (one subscribes, the others wait for it) and the runner sends at
    once, with no pause for the broker; a watcher on the runner's own replica says what
    was published."""
    database = postgres.create("running")
    shared = {"broker_url": rabbitmq_url, "bus_namespace": namespace, "database_urls": {"running": database}}
    upgrade("running", database)
    replica_a = create_app(running_settings(tmp_path, running_replica="a", **shared), keys=tokens.key_cache())
    replica_b = create_app(running_settings(tmp_path, running_replica="b", **shared), keys=tokens.key_cache())
    runner, friends = member(), [member() for _ in range(4)]
    points = track_points(seed=3, seconds=40)[:20]
    async with asgi_client(replica_a) as client_a, asgi_client(replica_b) as client_b:
        a = Running(replica_a, client_a, replica_a.state.kernel.settings)
        b = Running(replica_b, client_b, replica_b.state.kernel.settings)
        for friend in friends:
            await a.befriend(runner, friend)
        async with a.socket("/ws/runs", runner) as socket:
            run_id = (await receive(socket, "started"))["run_id"]
            path = f"/ws/runs/{run_id}/watch"
            watchers = [a.socket(path, friends[0])] + [b.socket(path, friend) for friend in friends[1:]]
            opened = await asyncio.gather(*(watcher.__aenter__() for watcher in watchers))
            try:
                await asyncio.gather(*(receive(watcher, "watching") for watcher in opened))
                for point in points:
                    await socket.send(json.dumps({"type": "point", **point}))
                await socket.send(json.dumps({"type": "finish"}))
                await receive(socket, "finished")
                seen = [await positions_until_finished(watcher) for watcher in opened]
            finally:
                for watcher in watchers:
                    await watcher.__aexit__(None, None, None)
    published = seen[0]
    assert len(published) >= 15
    assert len(set(published)) == len(published)
    for remote in seen[1:]:
        assert remote == published


async def positions_until_finished(watcher: ClientConnection) -> list[float]:
    times: list[float] = []
    while True:
        message = json.loads(await asyncio.wait_for(watcher.recv(), 10))
        if message["type"] == "finished":
            return times
        if message["type"] == "position":
            times.append(message["t"])
