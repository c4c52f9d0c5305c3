"""PostgreSQL stopped for ten seconds under a steady stream of sign-ups.

While the database is away every request is answered at once with 503 and Retry-After
(never a 500, never a hang); nothing is half written (every account has exactly the one
event its creation caused, every acknowledged sign-up exists); and sign-ups succeed again
within five seconds of the database's return, without restarting the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text

from auth.app import create_app as create_auth
from auth.settings import AuthSettings
from common.db import sync_url
from common.migrations import upgrade
from tests.auth.helpers import PASSWORD
from tests.support.apps import FAST_HASHER, asgi_client
from tests.support.infra import start_postgres, stop_postgres

OUTAGE_S = 10.0
WRITERS = 4


@dataclass(frozen=True)
class Answer:
    email: str
    status: int
    retry_after: str | None
    sent_at: float
    took_s: float


@pytest.mark.slow
@pytest.mark.exclusive
async def test_a_database_outage_answers_503_fast_loses_nothing_and_heals(tmp_path, postgres):
    url = postgres.create("auth")
    upgrade("auth", url)
    settings = AuthSettings(environment="test", data_dir=tmp_path, database_urls={"auth": url})
    answers: list[Answer] = []
    stop = asyncio.Event()

    async with asgi_client(create_auth(settings, hasher=FAST_HASHER)) as client:

        async def writer() -> None:
            while not stop.is_set():
                email = f"outage-{uuid.uuid4().hex[:12]}@example.com"
                sent = time.monotonic()
                response = await client.post("/signup", json={"email": email, "password": PASSWORD})
                answers.append(
                    Answer(
                        email, response.status_code, response.headers.get("retry-after"), sent, time.monotonic() - sent
                    )
                )
                await asyncio.sleep(0.05)

        writers = [asyncio.create_task(writer()) for _ in range(WRITERS)]
        try:
            await asyncio.sleep(2.0)
            await asyncio.to_thread(stop_postgres)
            down_at = time.monotonic()
            await asyncio.sleep(OUTAGE_S)
            restarting_at = time.monotonic()
            await asyncio.to_thread(start_postgres)
            back_at = time.monotonic()
            deadline = back_at + 30
            while time.monotonic() < deadline:
                if any(answer.status == 201 and answer.sent_at > back_at for answer in answers):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            await asyncio.gather(*writers)
            # Whatever happens above, leave the machine's database running.
            await asyncio.to_thread(start_postgres_if_stopped)

    statuses = {answer.status for answer in answers}
    assert statuses <= {201, 503}, statuses
    # Answered entirely while the server was down (before its restart began).
    during = [
        answer for answer in answers if down_at < answer.sent_at and answer.sent_at + answer.took_s < restarting_at
    ]
    assert len(during) >= 20, len(during)
    assert all(answer.status == 503 and answer.retry_after for answer in during)
    slowest = max(answer.took_s for answer in during)
    assert slowest < 2.0, f"a refusal took {slowest:.2f} s"
    healed = min(
        answer.sent_at + answer.took_s for answer in answers if answer.status == 201 and answer.sent_at > back_at
    )
    assert healed - back_at < 5.0, f"first sign-up after the database came back: {healed - back_at:.2f} s"

    engine = create_engine(sync_url(url))
    with engine.connect() as connection:
        users = {row.email: str(row.id) for row in connection.execute(text("SELECT id, email FROM users"))}
        bodies = connection.execute(text("SELECT body FROM outbox WHERE routing_key LIKE 'UserRegistered.%'"))
        registered = [json.loads(body)["data"]["user_id"] for (body,) in bodies]
    engine.dispose()
    acknowledged = {answer.email for answer in answers if answer.status == 201}
    assert acknowledged <= set(users), "an acknowledged sign-up is missing"
    # One event per account, no event without its account: no half-written sign-up.
    assert sorted(registered) == sorted(users.values())
    print(
        f"outage: {len(during)} refusals (503, slowest {slowest * 1000:.0f} ms), "
        f"{len(acknowledged)} sign-ups kept, healed {healed - back_at:.2f} s after the database returned"
    )


def start_postgres_if_stopped() -> None:
    # Already running: pg_ctlcluster refuses to start it twice.
    with contextlib.suppress(subprocess.CalledProcessError):
        start_postgres()
