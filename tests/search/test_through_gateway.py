"""Members reach search through the gateway's default route table: JWT at the edge,
the service's own answers (and refusals) passed through."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from gateway.app import create_app as create_gateway
from gateway.settings import GatewaySettings
from smartgym.serving import server_config
from tests.search.conftest import MEMBER, branch
from tests.support import tokens
from tests.support.apps import asgi_client, free_port, serving


@asynccontextmanager
async def listening(app: FastAPI) -> AsyncIterator[str]:
    """An app whose lifespan already runs (the fixture's), on a real port as well."""
    port = free_port()
    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=port, lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_search_suggest_and_detail_through_the_gateway(search):
    await search.announce(
        branch("gn", "스마트짐 강남역점", open_24h=True, facilities=("shower",)),
        branch("hd", "Iron Garden Hongdae", lat=37.5572, lon=126.9245, facilities=("squat_rack",)),
    )
    await search.settle()
    async with listening(search.app) as search_url, serving(tokens.jwks_app()) as auth_url:
        settings = GatewaySettings(
            environment="test", auth_url=auth_url, search_url=search_url, gateway_ip_rate_limit="10000/second"
        )
        async with asgi_client(create_gateway(settings)) as gateway:
            found = await gateway.get("/api/search/search", params={"q": "강남역 24시간 샤워실"}, headers=MEMBER)
            assert found.status_code == 200, found.text
            assert [hit["branch_id"] for hit in found.json()["hits"]] == ["gn"]
            posted = await gateway.post(
                "/api/search/search",
                json={"q": "squat rack", "filters": {"facilities": ["squat_rack"]}},
                headers=MEMBER,
            )
            assert [hit["branch_id"] for hit in posted.json()["hits"]] == ["hd"]
            suggest = await gateway.get("/api/search/suggest", params={"q": "iron"}, headers=MEMBER)
            assert suggest.json()["suggestions"][0]["branch_id"] == "hd"
            detail = await gateway.get("/api/search/branches/gn", headers=MEMBER)
            assert detail.json()["open_24h"] is True
            refused = await gateway.get("/api/search/search", params={"q": "gym", "sort": "price"}, headers=MEMBER)
            assert refused.status_code == 422
            assert "unknown parameters" in refused.text
            assert (await gateway.get("/api/search/search", params={"q": "gym"})).status_code == 401
