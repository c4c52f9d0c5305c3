"""The per-account reset throttle holds under concurrent requests (real PostgreSQL: the
account row is locked while the recent codes are counted)."""

from __future__ import annotations

import asyncio

from auth.app import create_app
from common.migrations import upgrade
from common.settings import PlatformSettings
from contracts import PasswordResetRequestedV2
from tests.auth.helpers import outbox_events, signup_and_login
from tests.support.apps import FAST_HASHER, asgi_client


async def test_a_burst_of_reset_requests_sends_no_more_than_the_allowance(tmp_path, postgres):
    settings = PlatformSettings(environment="test", data_dir=tmp_path, auth_database_url=postgres.create("auth"))
    upgrade("auth", settings.database_url("auth"))
    app = create_app(settings, hasher=FAST_HASHER)
    async with asgi_client(app) as client:
        email = "burst@example.com"
        await signup_and_login(client, email=email)
        answers = await asyncio.gather(
            *(client.post("/password/reset-request", json={"email": email}) for _ in range(12))
        )
        assert {answer.status_code for answer in answers} == {202}
    sent = outbox_events(settings, PasswordResetRequestedV2.routing_key())
    assert len(sent) == app.state.accounts.policy.max_resets
