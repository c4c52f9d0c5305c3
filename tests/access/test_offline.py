"""The gate when the network is gone: real auth (memberships, kiosk credentials, entry
passes), real RabbitMQ and PostgreSQL. auth is stopped and access restarted without it,
then the broker is stopped; entries are still decided, and once the broker is back every
decision arrives as an event exactly once."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import aio_pika
import httpx
import pytest
from sqlalchemy import select

from access.app import create_app
from access.models import AccessAttempt, MembershipCopy
from auth.app import create_app as create_auth_app
from auth.settings import AuthSettings
from common.migrations import upgrade
from tests.access.conftest import BRANCH, site_settings
from tests.auth.helpers import bearer, grant_membership, operator_tokens, signup_and_login
from tests.support.amqp import drain
from tests.support.apps import FAST_HASHER, asgi_client, serving
from tests.support.infra import rabbitmqctl
from tests.support.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.exclusive]


async def test_entries_are_decided_offline_and_every_event_arrives_once(
    tmp_path, rabbitmq_url, postgres, namespace, broker_cleanup, relay, facemodel_socket
):
    pair, device = relay
    bus = {"broker_url": rabbitmq_url, "bus_namespace": namespace, "outbox_poll_interval_s": 0.2}
    auth_settings = AuthSettings(
        environment="test", data_dir=tmp_path, database_urls={"auth": postgres.create("auth")}, **bus
    )
    upgrade("auth", auth_settings.database_url("auth"))
    auth_app = create_auth_app(auth_settings, hasher=FAST_HASHER)
    auth_server = contextlib.AsyncExitStack()
    auth_base = await auth_server.enter_async_context(serving(auth_app))
    settings = site_settings(
        tmp_path,
        pair.ours,
        facemodel_socket,
        auth_url=auth_base,
        database_urls={"access": postgres.create("access")},
        **bus,
    )
    upgrade("access", settings.database_url("access"))

    # Online: the membership arrives over RabbitMQ; auth's keys are fetched (and remembered).
    app = create_app(settings)
    async with asgi_client(app) as client, httpx.AsyncClient(base_url=auth_base) as auth:
        probe = await _probe_queue(rabbitmq_url, namespace)
        operator = await operator_tokens(auth_app, auth)
        member_id, member = await signup_and_login(auth)
        now = datetime.now(UTC)
        await grant_membership(
            auth,
            operator,
            member_id,
            branch_id=BRANCH,
            valid_from=(now - timedelta(days=1)).isoformat(),
            valid_until=(now + timedelta(days=30)).isoformat(),
        )
        registered = await auth.post(
            "/devices", json={"name": "door", "kind": "kiosk", "branch_id": BRANCH}, headers=bearer(operator)
        )
        kiosk_token = (await auth.post("/devices/token", json=registered.json())).json()["access_token"]
        kiosk_headers = {"authorization": f"Bearer {kiosk_token}"}
        passes = [
            (await auth.post("/me/entry-pass", json={"branch_id": BRANCH}, headers=bearer(member))).json()["code"]
            for _ in range(4)
        ]
        await eventually(lambda: _has_membership(app, uuid.UUID(member_id)), timeout=20)
        first = await scan(client, kiosk_headers, passes[0])
        assert (first["granted"], first["offline"]) == (True, False)

    # auth goes away; access restarts without it and still trusts the kiosk and the pass.
    await auth_server.aclose()
    app = create_app(settings)
    async with asgi_client(app) as client:
        await scan(client, kiosk_headers, passes[1], gate="front-out")
        rabbitmqctl("stop_app")
        try:
            await eventually(lambda: not app.state.kernel.bus.health()["ok"], timeout=10)
            assert (await client.get("/readyz")).status_code == 200  # still takes entries
            offline = [
                await scan(client, kiosk_headers, passes[2]),
                await scan(client, kiosk_headers, passes[2]),  # replayed
                await scan(client, kiosk_headers, passes[3]),  # already inside
                await scan(client, kiosk_headers, "not-a-pass-" * 3),
            ]
            assert [(item["granted"], item["reason"], item["offline"]) for item in offline] == [
                (True, "granted", True),
                (False, "pass_replayed", True),
                (False, "already_inside", True),
                (False, "pass_invalid", True),
            ]
        finally:
            rabbitmqctl("start_app")
            rabbitmqctl("await_startup")
        async with app.state.kernel.db.sessions() as session:
            attempts = {row for row in (await session.scalars(select(AccessAttempt.attempt_id))).all()}
        assert len(attempts) == 6
        delivered: list[str] = []

        async def all_delivered() -> bool:
            delivered.extend(await _attempts_published(rabbitmq_url, probe))
            return len(delivered) >= len(attempts)

        await eventually(all_delivered, timeout=60, every=0.5)
    assert len(delivered) == len(attempts)  # none duplicated
    assert {uuid.UUID(item) for item in delivered} == attempts  # none lost
    await eventually(lambda: len([f for f in device.frames if f.on]) == 3, timeout=3)


async def scan(client: httpx.AsyncClient, headers: dict, code: str, gate: str = "front-in") -> dict:
    response = await client.post(f"/v1/gates/{gate}/pass", json={"code": code}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _has_membership(app, member_id: uuid.UUID) -> bool:
    async with app.state.kernel.db.sessions() as session:
        return (await session.scalar(select(MembershipCopy).where(MembershipCopy.member_id == member_id))) is not None


async def _probe_queue(url: str, namespace: str) -> str:
    """A durable queue of our own on the events exchange, as another service would have."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{namespace}.probe", durable=True, arguments={"x-queue-type": "quorum"})
        for key in ("AccessGranted.v1", "AccessDenied.v1"):
            await queue.bind(f"{namespace}.events", key)
    return queue.name


async def _attempts_published(url: str, queue: str) -> list[str]:
    try:
        messages = await drain(url, queue)
    except (aio_pika.exceptions.AMQPError, ConnectionError):
        return []  # the broker is still coming back
    return [json.loads(message.body)["data"]["attempt_id"] for message in messages]
