"""Long streams through the gateway: an event stream (SSE) may stay quiet far longer than a
route's timeout and must not be cut; a quiet stream past the gateway's idle limit, and a
plain body that stalls past the route's timeout, are ended rather than held forever.

The quiet period is a parameter (SMARTGYM_QUIET_STREAM_S, default a few seconds, several
times the route's timeout): the mechanism is the same at two minutes, which is how it was
run once by hand (see docs/adr/0045-live-streams-through-the-gateway.md)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from common.security import Role, jwks_document
from gateway.app import create_app
from gateway.settings import GatewaySettings, RouteConfig
from tests.support import tokens
from tests.support.apps import serving

QUIET_S = float(os.environ.get("SMARTGYM_QUIET_STREAM_S", "3"))
ROUTE_TIMEOUT_S = 0.5


def upstream_app() -> FastAPI:
    app = FastAPI()

    @app.get("/.well-known/jwks.json")
    async def jwks() -> dict:
        return jwks_document([tokens.signing_key()])

    @app.get("/events")
    async def events(quiet: float) -> StreamingResponse:
        async def body():
            yield ": connected\n\n"
            await asyncio.sleep(quiet)  # no keep-alive at all: the worst case
            yield 'event: equipment\ndata: {"health": "down"}\n\n'

        return StreamingResponse(body(), media_type="text/event-stream")

    @app.get("/stalled")
    async def stalled() -> StreamingResponse:
        async def body():
            yield b"x" * 70_000  # past the gateway's small-body path
            await asyncio.sleep(30)
            yield b"never"

        return StreamingResponse(body(), media_type="application/octet-stream")

    return app


def gateway_settings(upstream: str, **extra: Any) -> GatewaySettings:
    return GatewaySettings(
        environment="test",
        auth_url=upstream,
        gateway_web_enabled=False,
        gateway_routes=(
            RouteConfig(prefix="/api/svc", service="svc", upstreams=(upstream,), timeout_s=ROUTE_TIMEOUT_S),
        ),
        **extra,
    )


def operator() -> dict[str, str]:
    return {"authorization": f"Bearer {tokens.issuer().issue('op-1', (Role.OPERATOR,))}"}


async def read_stream(url: str) -> tuple[str, float]:
    started = time.monotonic()
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client,
        client.stream("GET", url, headers=operator()) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join([chunk async for chunk in response.aiter_text()])
    return text, time.monotonic() - started


async def test_a_quiet_event_stream_outlives_the_route_timeout():
    async with serving(upstream_app()) as upstream, serving(create_app(gateway_settings(upstream))) as gateway:
        text, took = await read_stream(f"{gateway}/api/svc/events?quiet={QUIET_S}")
    assert "event: equipment" in text, text  # the event after the silence came through
    assert took >= QUIET_S


async def test_a_stream_quiet_past_the_idle_limit_is_closed():
    async with serving(upstream_app()) as upstream:
        settings = gateway_settings(upstream, gateway_stream_idle_s=1.0)
        async with serving(create_app(settings)) as gateway:
            text, took = await read_stream(f"{gateway}/api/svc/events?quiet=20")
    assert text == ": connected\n\n"  # closed; the client's EventSource logic reconnects
    assert 0.9 <= took < 10


async def test_a_stalled_plain_body_is_cut_after_the_route_timeout():
    async with serving(upstream_app()) as upstream, serving(create_app(gateway_settings(upstream))) as gateway:
        started = time.monotonic()
        received = 0
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client,
            client.stream("GET", f"{gateway}/api/svc/stalled", headers=operator()) as response,
        ):
            assert response.status_code == 200
            async for chunk in response.aiter_bytes():
                received += len(chunk)
        took = time.monotonic() - started
    assert received == 70_000
    assert took < 10  # not the upstream's 30 s
