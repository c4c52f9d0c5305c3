"""WebSocket pass-through: a real gateway server in front of a real upstream socket."""

from __future__ import annotations

import aiohttp
import pytest
from fastapi import FastAPI, WebSocket

from common.security import Role, jwks_document
from gateway.app import create_app
from gateway.settings import GatewaySettings, RouteConfig
from tests.support import tokens
from tests.support.apps import serving


def live_app() -> FastAPI:
    app = FastAPI()

    @app.get("/.well-known/jwks.json")
    async def jwks() -> dict:
        return jwks_document([tokens.signing_key()])

    @app.websocket("/ws/runs/{run_id}")
    async def run_socket(websocket: WebSocket, run_id: str) -> None:
        await websocket.accept()
        await websocket.send_json({"run": run_id, "token_seen": bool(websocket.headers.get("authorization"))})
        async for text in websocket.iter_text():
            await websocket.send_text(f"echo:{text}")

    return app


async def test_frames_flow_both_ways_and_bad_handshakes_are_refused():
    async with serving(live_app()) as upstream:
        settings = GatewaySettings(
            environment="test",
            auth_url=upstream,
            gateway_routes=(RouteConfig(prefix="/api/running", service="running", upstreams=upstream),),
        )
        async with serving(create_app(settings)) as gateway, aiohttp.ClientSession() as session:
            url = gateway.replace("http", "ws", 1) + "/api/running/ws/runs/r-1"
            token = tokens.issuer().issue("runner-1", [Role.CUSTOMER])
            async with session.ws_connect(url, headers={"authorization": f"Bearer {token}"}) as socket:
                hello = await socket.receive_json()
                assert hello == {"run": "r-1", "token_seen": True}  # the upstream checks the token again
                for n in range(20):
                    await socket.send_str(f"point-{n}")
                    assert (await socket.receive()).data == f"echo:point-{n}"
            async with session.ws_connect(f"{url}?access_token={token}") as socket:  # browsers: token in query
                assert (await socket.receive_json())["run"] == "r-1"
            for bad in ({}, {"authorization": "Bearer forged"}):
                # Closed before accepting: the server answers the handshake with 403.
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await session.ws_connect(url, headers=bad)
                assert refused.value.status == 403
