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


async def test_live_runs_pass_through_the_gateway_and_shared_links_need_no_account(tmp_path):
    """The real running service behind the real gateway: the route table sends
    /api/live to the live sockets, /api/running to the REST API."""
    import json

    from common.migrations import upgrade
    from running.app import create_app as create_running
    from tests.running.conftest import member, running_settings, track_points

    settings = running_settings(tmp_path)
    upgrade("running", settings.database_url("running"))
    running = create_running(settings, keys=tokens.key_cache())
    async with serving(running) as rest, serving(live_app()) as auth:
        live = f"http://127.0.0.1:{running.state.live_port}"
        gateway_settings = GatewaySettings(environment="test", auth_url=auth, running_url=rest, running_live_url=live)
        runner = member()
        async with serving(create_app(gateway_settings)) as gateway, aiohttp.ClientSession() as session:
            base = gateway.replace("http", "ws", 1)
            async with session.ws_connect(f"{base}/api/live/ws/runs", headers=runner.headers) as socket:
                run_id = (await socket.receive_json())["run_id"]
                shared = await session.post(
                    f"{gateway}/api/running/v1/runs/{run_id}/share", json={"hours": 1}, headers=runner.headers
                )
                assert shared.status == 201
                link = (await shared.json())["path"]
                async with session.ws_connect(f"{base}/api/live{link}") as watcher:  # no token
                    assert (await watcher.receive_json())["type"] == "watching"
                    await socket.send_str(json.dumps({"type": "point", **track_points(seconds=5)[0]}))
                    assert (await watcher.receive_json())["type"] == "position"
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await session.ws_connect(f"{base}/api/live/ws/runs")  # everything else needs a token
