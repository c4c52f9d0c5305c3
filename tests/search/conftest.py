from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from common.events.envelope import Event, OutgoingMessage
from common.events.inprocess import InProcessBus
from common.migrations import upgrade
from common.security import Role
from contracts import BranchInfoCreated, BranchInfoUpdated, OpeningHours, Price, ReviewPosted
from search.app import create_app
from search.settings import SearchSettings
from tests.support import tokens
from tests.support.apps import asgi_client
from tests.support.events import recording_bus


def headers(role: Role = Role.CUSTOMER, user_id: uuid.UUID | None = None) -> dict[str, str]:
    # Long-lived: MEMBER is made once at import and must outlast a whole test run.
    token = tokens.issuer(ttl=timedelta(hours=6)).issue(str(user_id or uuid.uuid4()), [role], [])
    return {"authorization": f"Bearer {token}"}


MEMBER = headers()


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def branch(branch_id: str, name: str, *, version: int = 1, updated: bool = False, **fields: Any) -> Event:
    """A profile as branch_owner publishes it; ``monthly_price_krw`` and ``weekly_hours``
    ((day index, opens, closes)) are spelled the test's short way."""
    values: dict[str, Any] = {
        "branch_id": branch_id,
        "revision": version,
        "name": name,
        "address": "서울 강남구 테헤란로 1",
        "description": "",
        "lat": 37.4979,
        "lon": 127.0276,
        "open_24h": False,
        "facilities": (),
        "updated_at": datetime.now(UTC),
    }
    price = fields.pop("monthly_price_krw", None)
    if price is not None:
        values["prices"] = (Price(name="1 month", amount_krw=price),)
    hours = fields.pop("weekly_hours", None)
    values["hours"] = tuple(
        OpeningHours(day=WEEKDAYS[day], open=opens, close=closes)
        for day, opens, closes in hours or [(0, "06:00", "23:00")]
    )
    values.update(fields)
    return (BranchInfoUpdated if updated else BranchInfoCreated)(**values)


def review(branch_id: str, rating: int, text: str, **fields: Any) -> ReviewPosted:
    return ReviewPosted(
        review_id=fields.pop("review_id", uuid.uuid4()),
        branch_id=branch_id,
        member_id=fields.pop("member_id", uuid.uuid4()),
        rating=rating,
        text=text,
        revision=fields.pop("revision", 1),
        posted_at=fields.pop("posted_at", datetime.now(UTC)),
        **fields,
    )


@dataclass
class Search:
    app: FastAPI
    client: httpx.AsyncClient
    bus: InProcessBus

    async def announce(self, *events: Event) -> None:
        await self.bus.publish_many([OutgoingMessage.of(event) for event in events])

    async def settle(self) -> None:
        """Index what the announced events changed (the in-process bus has applied them
        by the time ``announce`` returns)."""
        assert not self.bus.parked, self.bus.parked
        await self.app.state.index_updater.flush()

    async def enrich(self) -> int:
        from datetime import timedelta

        done = await self.app.state.enricher.run_once(now=datetime.now(UTC) + timedelta(minutes=1))
        await self.app.state.index_updater.flush()
        return done

    async def find(self, q: str, **params: Any) -> dict[str, Any]:
        response = await self.client.get("/search", params={"q": q, **params}, headers=MEMBER)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture
def open_search(tmp_path) -> Callable[..., AbstractAsyncContextManager[Search]]:
    @asynccontextmanager
    async def opened(**overrides: Any) -> AsyncIterator[Search]:
        values: dict[str, Any] = {"environment": "test", "data_dir": tmp_path, "search_index_flush_s": 0.01}
        settings = SearchSettings(**{**values, **overrides})
        upgrade("search", settings.database_url("search"))
        async with recording_bus() as recording:
            app = create_app(
                settings,
                bus=recording.bus,
                metrics=recording.metrics,
                keys=tokens.key_cache(),
                **{key: value for key, value in overrides.items() if key in ("backend", "llm_transport")},
            )
            async with asgi_client(app) as client:
                yield Search(app, client, recording.bus)

    return opened


@pytest.fixture
async def search(open_search):
    async with open_search() as opened:
        yield opened
