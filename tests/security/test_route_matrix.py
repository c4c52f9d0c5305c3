"""Every route of every service, by every kind of caller and a forged token: no unexpected
2xx, never a 5xx.

The routes come from each service's own OpenAPI (so a new route is covered the day it is
added), the expectations from :mod:`tests.security.route_policy`. This checks each
service's own authorization, without the gateway in front: the gateway is a second line,
not the only one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.security.route_policy import POLICY, Caller, Scoped
from tests.security.services import BRANCH_A, FORGED_OPERATOR, Callers, built_service
from tests.support.apps import asgi_client

METHODS = ("get", "put", "post", "patch", "delete")


@dataclass
class Opened:
    app: FastAPI
    client: httpx.AsyncClient
    callers: Callers
    # Path parameters that name a real resource of branch A in this service.
    known: dict[str, str] = field(default_factory=dict)


OpenService = Callable[[str], AbstractAsyncContextManager[Opened]]


@pytest.fixture
def open_service(tmp_path) -> OpenService:
    @asynccontextmanager
    async def opened(name: str) -> AsyncIterator[Opened]:
        async with built_service(name, tmp_path) as built, asgi_client(built.app) as client:
            opened = Opened(built.app, client, Callers(built.issuer()), known=dict(built.known))
            if name == "monitoring":
                opened.known["device_id"] = await seed_equipment(opened)
            yield opened

    return opened


async def seed_equipment(opened: Opened) -> str:
    body = [
        {
            "device_id": "matrix-treadmill-a",
            "branch_id": BRANCH_A,
            "kind": "treadmill",
            "name": "Treadmill A",
            "ping_url": None,
            "heartbeat_period_s": 600,
        }
    ]
    response = await opened.client.put("/v1/equipment", json=body, headers=opened.callers.headers(Caller.OPERATOR))
    assert response.status_code == 200, response.text
    return "matrix-treadmill-a"


def fill(path: str, opened: Opened) -> str:
    """The path with its parameters naming things of branch A (or of the customer)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in opened.known:
            return opened.known[name]
        if name == "branch_id":
            return BRANCH_A
        if name in ("member_id", "user_id"):
            return opened.callers.ids[Caller.CUSTOMER]
        if name == "day":
            return datetime.now(UTC).date().isoformat()
        if name == "token":
            return "matrix-push-token-0001"
        return str(uuid.uuid4())

    return re.sub(r"\{(\w+)\}", value, path)


def routes_of(app: FastAPI) -> list[tuple[str, str]]:
    paths: dict[str, dict[str, Any]] = app.openapi()["paths"]
    return sorted((method.upper(), path) for path, operations in paths.items() for method in operations)


MATRIX_SERVICES = sorted(POLICY)


@pytest.mark.parametrize("service", MATRIX_SERVICES)
async def test_every_route_answers_each_caller_as_declared(service, open_service):
    async with open_service(service) as opened:
        routes = routes_of(opened.app)
        declared = POLICY[service]
        undeclared = [route for route in routes if route not in declared]
        assert not undeclared, f"routes without a declared policy in route_policy.py: {undeclared}"
        unexpected: list[str] = []
        for method, path in routes:
            if path == "/v1/stream":
                continue  # an endless SSE response: its authorization is checked below
            allowed = declared[(method, path)]
            url = fill(path, opened)
            anonymous_status = 0
            for caller in Caller:
                body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
                response = await opened.client.request(method, url, headers=opened.callers.headers(caller), **body)
                if caller is Caller.ANONYMOUS:
                    anonymous_status = response.status_code
                if response.status_code >= 500:
                    unexpected.append(f"{caller} {method} {url}: {response.status_code} {response.text[:200]}")
                elif response.is_success and caller not in allowed:
                    if isinstance(allowed, Scoped) and response.json() == []:
                        continue
                    unexpected.append(f"{caller} {method} {url}: {response.status_code}, not allowed")
                elif caller is Caller.ANONYMOUS and caller not in allowed and response.status_code != 401:
                    unexpected.append(f"anonymous {method} {url}: {response.status_code}, expected 401")
            # Refused, or (on a route open to anyone) answered as if no token had been sent.
            forged = await opened.client.request(method, url, headers=FORGED_OPERATOR, **body)
            if forged.status_code not in (401, anonymous_status if Caller.ANONYMOUS in allowed else 401):
                unexpected.append(f"a forged token {method} {url}: {forged.status_code}, expected 401")
        assert not unexpected, "\n".join(unexpected)


async def test_the_equipment_stream_refuses_callers_outside_staff(open_service):
    async with open_service("monitoring") as opened:
        for caller in (Caller.ANONYMOUS, Caller.CUSTOMER, Caller.HELPER, Caller.DEVICE_A):
            response = await opened.client.get("/v1/stream", headers=opened.callers.headers(caller))
            assert response.status_code in (401, 403), (caller, response.status_code)
