"""Sign-ins as a steady load, for runs that watch the services over minutes
(``bench/perf_memory.py``).

auth runs as its own process (production Argon2id parameters, PostgreSQL, the broker for
its events). Members log in at ``rate`` a second, paced on a schedule; each login is
followed by a token refresh and a ``/me`` with the new access token, and every fifth
attempt is instead a wrong password for an address never seen before (what a credential
stuffer sends: a throttle row each, never a lockout). Every answer is checked against what
it must be; anything else is a failure, counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench._common import ROOT, count_answer, error_counts, paced, progress, stop_quietly, unexpected
from common.migrations import upgrade
from tests.support.apps import free_port
from tests.support.infra import PostgresDatabases
from tests.support.processes import clean_env, start, wait_healthy

PASSWORD = "a long enough password"
STRANGER_EVERY = 5


@dataclass
class AccountsLoad:
    url: str
    members: list[str]
    rate: float
    pids: dict[str, int]
    outcomes: Counter[str] = field(default_factory=Counter)

    async def run(self, seconds: float) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            attempts = itertools.count()
            errors = await paced(lambda: self._attempt(client, next(attempts)), self.rate, seconds)
        self.outcomes.update(error_counts("attempt", errors))

    async def _attempt(self, client: httpx.AsyncClient, number: int) -> None:
        try:
            if number % STRANGER_EVERY == STRANGER_EVERY - 1:
                wrong = await client.post(
                    "/login", json={"email": f"stranger{number}@example.com", "password": "not the password"}
                )
                count_answer(self.outcomes, "wrong password", wrong, 401)
                return
            email = self.members[number % len(self.members)]
            login = await client.post("/login", json={"email": email, "password": PASSWORD})
            if not count_answer(self.outcomes, "login", login, 200):
                return
            refreshed = await client.post("/token/refresh", json={"refresh_token": login.json()["refresh_token"]})
            if not count_answer(self.outcomes, "refresh", refreshed, 200):
                return
            me = await client.get("/me", headers={"authorization": f"Bearer {refreshed.json()['access_token']}"})
            count_answer(self.outcomes, "me", me, 200)
        except httpx.HTTPError as exc:
            self.outcomes[f"transport error: {type(exc).__name__}"] += 1

    async def verify(self) -> dict[str, Any]:
        wrong = unexpected("auth", self.outcomes, ("login", "refresh", "me", "wrong password"))
        return {"sign_ins": self.outcomes["me"], "wrong_passwords": self.outcomes["wrong password"],
                "unexpected": wrong}  # fmt: skip


@contextlib.asynccontextmanager
async def accounts_load(
    *, databases: PostgresDatabases, broker_url: str, namespace: str, scratch: Path, members: int, rate: float
) -> AsyncIterator[AccountsLoad]:
    """auth started and healthy with ``members`` signed up; stopped on the way out."""
    database = databases.create("bench_accounts_auth")
    upgrade("auth", database)
    port = free_port()
    env = clean_env(
        SMARTGYM_BROKER_URL=broker_url,
        SMARTGYM_BUS_NAMESPACE=namespace,
        SMARTGYM_AUTH_DATABASE_URL=database,
        SMARTGYM_DATA_DIR=str(scratch),
        SMARTGYM_LOG_LEVEL="WARNING",
    )
    log = scratch / "auth.log"
    process = start(["serve", "auth", "--port", str(port)], env=env, cwd=ROOT, log=log)
    try:
        url = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(wait_healthy, url, process, log)
        emails = [f"member{n}@example.com" for n in range(members)]
        progress(f"auth: signing up {members} members")
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            for email in emails:
                created = await client.post("/signup", json={"email": email, "password": PASSWORD})
                if created.status_code != 201:
                    raise SystemExit(f"auth: signup answered {created.status_code}: {created.text[:300]}")
        yield AccountsLoad(url=url, members=emails, rate=rate, pids={"auth": process.pid})
    finally:
        stop_quietly(process)
