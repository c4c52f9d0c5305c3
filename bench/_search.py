"""Searching as a steady load, for runs that watch the services over minutes
(``bench/perf_memory.py``).

search runs as its own process on the embedded engine, as ``bench/search_query_latency.py``
runs it: a SQLite database seeded with ``branches`` generated branches and their latest
reviews, indexed once through the operator API. Members search at ``query_rate`` a second
(the relevance set's queries, Korean and English, some near a place), and new reviews
arrive as ``ReviewPosted`` events at ``review_rate`` a second (each recorded and its
branch marked for re-indexing). Every query must be answered, and every posted review
must show on its branch's page by the end (read from the database: whether the index
caught up is not checked here).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench._common import ROOT, error_counts, fail, paced, progress, stop_quietly, unexpected
from bench.search_query_latency import seed
from common.events.envelope import OutgoingMessage
from common.events.rabbitmq import RabbitMQBus
from common.observability import Metrics
from common.security import Role
from contracts import CATALOG, ReviewPosted
from search.relevance import load
from tests.support import tokens
from tests.support.apps import free_port, serving
from tests.support.processes import clean_env, start, wait_healthy


def _bearer(role: Role) -> dict[str, str]:
    return tokens.bearer(f"bench-{role.value}", [role])


@dataclass
class SearchLoad:
    url: str
    bus: RabbitMQBus
    branch_ids: list[str]
    query_rate: float
    review_rate: float
    pids: dict[str, int]
    posted: dict[str, str] = field(default_factory=dict)  # review id -> branch id
    outcomes: Counter[str] = field(default_factory=Counter)

    async def run(self, seconds: float) -> None:
        queries = itertools.cycle(load())
        choose = random.Random(3)
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:

            async def query() -> None:
                item = next(queries)
                params = {"q": item["q"], **({"lat": item["lat"], "lon": item["lon"]} if "lat" in item else {})}
                response = await client.get("/search", params=params, headers=_bearer(Role.CUSTOMER))
                self.outcomes["query" if response.status_code == 200 else f"query {response.status_code}"] += 1

            async def review() -> None:
                event = ReviewPosted(
                    review_id=uuid.uuid4(),
                    branch_id=choose.choice(self.branch_ids),
                    member_id=uuid.uuid4(),
                    rating=choose.randint(1, 5),
                    text="Clean showers and the treadmills are always free at night",
                    revision=1,
                    posted_at=datetime.now(UTC),
                )
                await self.bus.publish_many([OutgoingMessage.of(event)])
                self.posted[str(event.review_id)] = event.branch_id

            queries_failed, reviews_failed = await asyncio.gather(
                paced(query, self.query_rate, seconds), paced(review, self.review_rate, seconds)
            )
        self.outcomes.update(error_counts("query", queries_failed) + error_counts("review", reviews_failed))

    async def verify(self, *, drain_s: float = 60.0) -> dict[str, Any]:
        """Waits for the last reviews to be recorded; one never shown fails the run."""
        unseen = dict(self.posted)
        deadline = time.monotonic() + drain_s
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            while unseen and time.monotonic() < deadline:
                for branch_id in set(unseen.values()):
                    page = await client.get(f"/branches/{branch_id}/reviews?limit=100", headers=_bearer(Role.CUSTOMER))
                    if page.status_code == 200:
                        for row in page.json()["reviews"]:
                            unseen.pop(str(row["review_id"]), None)
                if unseen:
                    await asyncio.sleep(1.0)
        wrong = unexpected("search", self.outcomes, ("query",))
        if unseen:
            fail(f"search: {len(unseen)} of {len(self.posted)} posted reviews never shown")
        return {"queries": self.outcomes["query"], "reviews": len(self.posted), "reviews_unseen": len(unseen),
                "unexpected": wrong}  # fmt: skip


@contextlib.asynccontextmanager
async def search_load(
    *, broker_url: str, namespace: str, scratch: Path, branches: int, query_rate: float, review_rate: float
) -> AsyncIterator[SearchLoad]:
    """search seeded, started, healthy and indexed; stopped on the way out."""
    data = scratch / "search"
    data.mkdir()
    database = data / "search.db"
    progress(f"search: seeding {branches} branches")
    await asyncio.to_thread(seed, f"sqlite+aiosqlite:///{database}", branches, 8)
    with contextlib.closing(sqlite3.connect(database)) as connection:
        branch_ids = [row[0] for row in connection.execute("SELECT branch_id FROM branches")]
    bus = RabbitMQBus(broker_url, catalog=CATALOG, metrics=Metrics(), namespace=namespace)
    process = None
    try:
        async with serving(tokens.jwks_app()) as auth_url:
            port = free_port()
            env = clean_env(
                SMARTGYM_BROKER_URL=broker_url,
                SMARTGYM_BUS_NAMESPACE=namespace,
                SMARTGYM_DATA_DIR=str(data),
                SMARTGYM_AUTH_URL=auth_url,
                SMARTGYM_LOG_LEVEL="WARNING",
                SMARTGYM_SEARCH_DATABASE_URL=f"sqlite+aiosqlite:///{database}",
                SMARTGYM_SEARCH_ENRICH_INTERVAL_S="3600",
            )
            log = data / "search.log"
            process = start(["serve", "search", "--port", str(port)], env=env, cwd=ROOT, log=log)
            url = f"http://127.0.0.1:{port}"
            await asyncio.to_thread(wait_healthy, url, process, log, 120)
            async with httpx.AsyncClient(base_url=url, timeout=600) as client:
                (await client.post("/admin/reindex", headers=_bearer(Role.OPERATOR))).raise_for_status()
            await bus.start()
            yield SearchLoad(url=url, bus=bus, branch_ids=branch_ids, query_rate=query_rate, review_rate=review_rate,
                             pids={"search": process.pid})  # fmt: skip
    finally:
        await bus.close()
        if process is not None:
            stop_quietly(process)
