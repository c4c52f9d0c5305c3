"""Access tokens die early on every replica: logout, password change, role change and a
revoked device reach each verifier over the bus within seconds, and a replica that
starts later reads the revocations still in force from auth (real RabbitMQ, PostgreSQL
and HTTP)."""

from __future__ import annotations

import uuid

import pytest

from auth.app import create_app
from common.db import service_metadata
from common.events.envelope import EventCatalog
from common.kernel import ServiceKernel, build_kernel, remote_jwks
from common.migrations import upgrade
from common.security import InvalidToken, Role
from common.settings import PlatformSettings
from tests.auth.helpers import PASSWORD, bearer, operator_tokens, signup_and_login
from tests.support.apps import FAST_HASHER, asgi_client, free_port, serving
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow


async def refused(kernel: ServiceKernel, token: str) -> bool:
    try:
        await kernel.verifier.verify(token)
    except InvalidToken as exc:
        return exc.reason == "token revoked"
    return False


def replica(settings: PlatformSettings) -> ServiceKernel:
    """Another service's replica: verifier, bus and the revocations it follows (nothing else)."""
    return build_kernel(
        "running", settings, metadata=service_metadata(), keys=remote_jwks(settings), catalog=EventCatalog()
    )


async def test_revocations_reach_every_replica_and_one_started_later(
    tmp_path, rabbitmq_url, postgres, namespace, broker_cleanup
):
    port = free_port()
    settings = PlatformSettings(
        environment="test",
        data_dir=tmp_path,
        broker_url=rabbitmq_url,
        bus_namespace=namespace,
        auth_database_url=postgres.create("auth"),
        auth_url=f"http://127.0.0.1:{port}",
        outbox_poll_interval_s=0.1,
    )
    upgrade("auth", settings.database_url("auth"))
    upgrade("running", settings.database_url("running"))  # the replica's own (empty) database
    app = create_app(settings, hasher=FAST_HASHER)
    early = replica(settings)
    async with serving(app, port), asgi_client(app) as client:
        await early.start()
        late: ServiceKernel | None = None
        try:
            email = f"m{uuid.uuid4().hex[:6]}@example.com"
            member_id, logged_out = await signup_and_login(client, email=email)
            _, kept = await signup_and_login(client, email=email.replace("m", "n", 1))
            assert not await refused(early, logged_out["access_token"])

            # Logout ends that session's access token too, not only its refresh token.
            await client.post("/logout", json={"refresh_token": logged_out["refresh_token"]})
            await eventually(lambda: refused(early, logged_out["access_token"]), timeout=5)
            assert not await refused(early, kept["access_token"])  # another member's session lives on

            # A password change ends every token issued before it, not the next login's.
            second = (await client.post("/login", json={"email": email, "password": PASSWORD})).json()
            changed = await client.post(
                "/password",
                json={"current_password": PASSWORD, "new_password": "brand new secret 1"},
                headers=bearer(second),
            )
            assert changed.status_code == 204
            await eventually(lambda: refused(early, second["access_token"]), timeout=5)
            fresh = (await client.post("/login", json={"email": email, "password": "brand new secret 1"})).json()
            assert not await refused(early, fresh["access_token"])
            assert (await client.get("/me", headers=bearer(fresh))).status_code == 200

            # A role change: the token that still claims the old roles stops working.
            operator = await operator_tokens(app, client)
            staff = await client.put(
                f"/users/{member_id}/roles",
                json={"roles": [Role.HELPER.value], "branches": ["b-1"]},
                headers=bearer(operator),
            )
            assert staff.status_code == 200, staff.text
            await eventually(lambda: refused(early, fresh["access_token"]), timeout=5)

            # A revoked device.
            device = (
                await client.post(
                    "/devices", json={"name": "gate", "kind": "gate", "branch_id": "b-1"}, headers=bearer(operator)
                )
            ).json()
            credentials = {"client_id": device["client_id"], "client_secret": device["client_secret"]}
            device_token = (await client.post("/devices/token", json=credentials)).json()["access_token"]
            assert not await refused(early, device_token)
            await client.delete(f"/devices/{device['client_id']}", headers=bearer(operator))
            await eventually(lambda: refused(early, device_token), timeout=5)

            # A replica started now never saw those events: it reads them from auth at start.
            late = replica(settings)
            await late.start()
            for token in (logged_out["access_token"], second["access_token"], fresh["access_token"], device_token):
                assert await refused(late, token)
            assert not await refused(late, kept["access_token"])
            listed = (await client.get("/revocations")).json()
            assert {item["subject"] for item in listed} >= {member_id, f"device:{device['client_id']}"}
        finally:
            await early.stop()
            if late is not None:
                await late.stop()
