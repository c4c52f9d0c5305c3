"""Password hashes run on a bounded pool of threads of their own: a burst of logins queues
for them instead of running every hash at once (each keeps 19 MiB in its thread's malloc
arena at the production parameters, so more threads means more memory held for good)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Literal

from argon2 import PasswordHasher

from auth.app import create_app
from auth.settings import AuthSettings
from common.migrations import upgrade
from tests.support.apps import asgi_client

PASSWORD = "a long enough password"


class WatchedHasher(PasswordHasher):
    """Cheap parameters, slowed a little so that hashes started together overlap; records
    how many ran at once and on which threads."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8 * 1024, parallelism=1)
        self._lock = threading.Lock()
        self.running = 0
        self.most_at_once = 0
        self.threads: set[str] = set()

    def _watched(self, work: Any, *args: Any) -> Any:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.threads.add(threading.current_thread().name)
        try:
            time.sleep(0.05)
            return work(*args)
        finally:
            with self._lock:
                self.running -= 1

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        return str(self._watched(super().hash, password))

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self._watched(super().verify, hash, password)  # raises on a mismatch
        return True


async def test_a_burst_of_logins_hashes_on_the_configured_threads_only(tmp_path):
    settings = AuthSettings(environment="test", data_dir=tmp_path, auth_hash_threads=2)
    upgrade("auth", settings.database_url("auth"))
    hasher = WatchedHasher()
    app = create_app(settings, hasher=hasher)
    async with asgi_client(app) as client:
        emails = [f"burst{n}@example.com" for n in range(8)]
        for email in emails:
            created = await client.post("/signup", json={"email": email, "password": PASSWORD})
            assert created.status_code == 201, created.text
        hasher.most_at_once = 0
        hasher.threads.clear()

        logins = await asyncio.gather(
            *(client.post("/login", json={"email": email, "password": PASSWORD}) for email in emails)
        )

    assert [response.status_code for response in logins] == [200] * len(emails)
    assert hasher.most_at_once == 2
    assert {name.split("_")[0] for name in hasher.threads} == {"argon2"}


async def test_an_app_started_again_still_hashes(tmp_path):
    settings = AuthSettings(environment="test", data_dir=tmp_path, auth_hash_threads=1)
    upgrade("auth", settings.database_url("auth"))
    app = create_app(settings, hasher=WatchedHasher())
    async with asgi_client(app) as client:
        created = await client.post("/signup", json={"email": "again@example.com", "password": PASSWORD})
        assert created.status_code == 201, created.text

    async with asgi_client(app) as client:
        login = await client.post("/login", json={"email": "again@example.com", "password": PASSWORD})

    assert login.status_code == 200, login.text
