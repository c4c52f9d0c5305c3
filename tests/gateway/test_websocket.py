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
from tests.support.waiting import eventually


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

    @app.websocket("/ws/finish/{run_id}")
    async def finishing(websocket: WebSocket, run_id: str) -> None:
        await websocket.accept()
        await websocket.close(code=4001, reason=f"run {run_id} finished")

    @app.websocket("/ws/share/{link}")
    async def watch(websocket: WebSocket, link: str) -> None:
        await websocket.accept()
        await websocket.send_json({"watching": link})
        async for _ in websocket.iter_text():
            pass

    @app.get("/plain")
    async def plain() -> dict:
        return {"ok": True}

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
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await session.ws_connect(url, headers=bad)
                assert refused.value.status == 401


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


UPGRADE = {
    "connection": "Upgrade",
    "upgrade": "websocket",
    "sec-websocket-version": "13",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def gateway_for(upstream: str, **overrides) -> GatewaySettings:
    return GatewaySettings(
        environment="test",
        auth_url=upstream,
        gateway_routes=(
            RouteConfig(prefix="/api/running", service="running", upstreams=upstream, public=("/ws/share/",)),
        ),
        **overrides,
    )


async def test_refusals_say_why_and_close_reasons_pass_through():
    async with (
        serving(live_app()) as upstream,
        serving(create_app(gateway_for(upstream))) as gateway,
        aiohttp.ClientSession() as session,
    ):
        url = f"{gateway}/api/running/ws/runs/r-1"
        async with session.get(url, headers=UPGRADE) as missing:
            assert missing.status == 401
            assert (await missing.json())["detail"] == "bearer token required"
            assert missing.headers["www-authenticate"] == "Bearer"
        async with session.get(f"{url}?access_token=forged.token.here", headers=UPGRADE) as forged:
            assert forged.status == 401
            assert (await forged.json())["detail"]
            assert "invalid_token" in forged.headers["www-authenticate"]
        token = tokens.issuer().issue("runner-1", [Role.CUSTOMER])
        finish = gateway.replace("http", "ws", 1) + "/api/running/ws/finish/r-9"
        async with session.ws_connect(finish, headers={"authorization": f"Bearer {token}"}) as socket:
            closing = await socket.receive()
            assert closing.type == aiohttp.WSMsgType.CLOSE
            assert (closing.data, closing.extra) == (4001, "run r-9 finished")


async def test_open_sockets_are_capped_per_principal_address_and_shared_link():
    async with serving(live_app()) as upstream:
        settings = gateway_for(
            upstream, gateway_ws_per_address=4, gateway_ws_per_principal=2, gateway_ws_per_share_link=1
        )
        async with serving(create_app(settings)) as gateway, aiohttp.ClientSession() as session:
            base = gateway.replace("http", "ws", 1) + "/api/running"

            def bearer(name: str) -> dict[str, str]:
                return {"authorization": f"Bearer {tokens.issuer().issue(name, [Role.CUSTOMER])}"}

            async def refused(path: str, headers: dict[str, str] | None = None) -> str:
                async with session.get(f"{gateway}/api/running{path}", headers={**UPGRADE, **(headers or {})}) as got:
                    assert got.status == 429, got.status
                    return str((await got.json())["detail"])

            first = await session.ws_connect(f"{base}/ws/runs/a", headers=bearer("a"))
            second = await session.ws_connect(f"{base}/ws/runs/a", headers=bearer("a"))
            assert "principal" in await refused("/ws/runs/a", bearer("a"))
            watcher = await session.ws_connect(f"{base}/ws/share/link-x")
            assert "shared link" in await refused("/ws/share/link-x")
            other_link = await session.ws_connect(f"{base}/ws/share/link-y")
            assert "address" in await refused("/ws/runs/b", bearer("b"))
            await first.close()

            async def admitted() -> bool:
                try:
                    socket = await session.ws_connect(f"{base}/ws/runs/b", headers=bearer("b"))
                except aiohttp.WSServerHandshakeError:
                    return False
                await socket.close()
                return True

            await eventually(admitted, timeout=3)
            for socket in (second, watcher, other_link):
                await socket.close()


async def test_open_sockets_do_not_take_the_http_pool():
    async with serving(live_app()) as upstream:
        settings = gateway_for(upstream, gateway_ws_per_address=500, gateway_ws_per_principal=500)
        unlimited = aiohttp.TCPConnector(limit=0)  # the client's own pool must not be what runs out
        async with serving(create_app(settings)) as gateway, aiohttp.ClientSession(connector=unlimited) as session:
            token = tokens.issuer().issue("runner-1", [Role.CUSTOMER])
            url = gateway.replace("http", "ws", 1) + "/api/running/ws/runs/r-1"
            headers = {"authorization": f"Bearer {token}"}
            sockets = [await session.ws_connect(url, headers=headers) for _ in range(130)]  # > 128 pooled per host
            try:
                plain_timeout = aiohttp.ClientTimeout(total=10)
                async with session.get(f"{gateway}/api/running/plain", headers=headers, timeout=plain_timeout) as plain:
                    assert plain.status == 200, await plain.text()
            finally:
                for socket in sockets:
                    await socket.close()
