"""The gateway's proxy against real upstream processes on loopback: load balancing with
passive health, retries, timeouts, streaming, body limits and rate limits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from common.security import Role, jwks_document
from gateway.app import create_app
from gateway.settings import GatewaySettings, RouteConfig
from tests.support import tokens
from tests.support.apps import asgi_client, free_port, serving

BIG = 5 * 1024 * 1024


def instance_app(name: str) -> FastAPI:
    app = FastAPI()

    @app.get("/.well-known/jwks.json")
    async def jwks() -> dict:
        return jwks_document([tokens.signing_key()])

    @app.get("/who")
    async def who() -> dict:
        return {"instance": name}

    @app.get("/slow")
    async def slow() -> dict:
        await asyncio.sleep(3)
        return {"late": True}

    @app.get("/big")
    async def big() -> StreamingResponse:
        async def chunks():
            for index in range(BIG // 65536):
                yield bytes([index % 256]) * 65536

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        return {"bytes": len(await request.body())}

    return app


def bearer(subject="member-1", roles=(Role.CUSTOMER,)) -> dict[str, str]:
    return tokens.bearer(subject, roles)


def settings_for(*upstreams: str, **route: object) -> GatewaySettings:
    return GatewaySettings(
        environment="test",
        auth_url=upstreams[-1],  # serves the test JWKS; outlives the others
        gateway_ip_rate_limit="10000/second",
        gateway_routes=(RouteConfig(prefix="/api/svc", service="svc", upstreams=upstreams, **route),),
    )


async def test_requests_spread_over_instances_and_survive_one_dying():
    port_a, port_b = free_port(), free_port()
    async with serving(instance_app("b"), port_b) as url_b:
        settings = settings_for(f"http://127.0.0.1:{port_a}", url_b, timeout_s=2)
        async with serving(instance_app("a"), port_a), asgi_client(create_app(settings)) as gateway:
            seen = {(await gateway.get("/api/svc/who", headers=bearer())).json()["instance"] for _ in range(10)}
            assert seen == {"a", "b"}  # both instances serve
            # instance a stops here (leaving the block); b keeps serving
        async with asgi_client(create_app(settings)) as gateway:
            answers = [await gateway.get("/api/svc/who", headers=bearer()) for _ in range(20)]
            assert [answer.status_code for answer in answers] == [200] * 20  # no client request failed
            assert {answer.json()["instance"] for answer in answers} == {"b"}
            pools = (await gateway.get("/admin/breakers", headers=bearer(roles=(Role.OPERATOR,)))).json()
            [svc] = pools
            assert svc["state"] == "closed"
            assert {item["url"]: item["ejected"] for item in svc["instances"]}[f"http://127.0.0.1:{port_a}"] is True


@asynccontextmanager
async def gateway_in_front(**route: object) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway in front of one real upstream instance, with this route's settings."""
    async with serving(instance_app("a")) as url, asgi_client(create_app(settings_for(url, **route))) as gateway:
        yield gateway


async def test_slow_upstream_is_a_504_and_nothing_stays_stuck():
    async with gateway_in_front(timeout_s=0.5) as gateway:
        slow = await gateway.get("/api/svc/slow", headers=bearer())
        assert slow.status_code == 504
        assert (await gateway.get("/api/svc/who", headers=bearer())).status_code == 200


async def test_large_responses_stream_through_intact():
    async with serving(instance_app("a")) as url, asgi_client(create_app(settings_for(url))) as gateway:
        response = await gateway.get("/api/svc/big", headers=bearer())
        assert response.status_code == 200
        assert len(response.content) == BIG
        assert response.content[65536 * 7 : 65536 * 7 + 3] == bytes([7, 7, 7])


async def test_body_limit_is_per_route():
    async with gateway_in_front(max_body_bytes=1000) as gateway:
        fits = await gateway.post("/api/svc/echo", content=b"x" * 1000, headers=bearer())
        assert fits.json() == {"bytes": 1000}
        refused = await gateway.post("/api/svc/echo", content=b"x" * 1001, headers=bearer())
        assert refused.status_code == 413


async def test_a_burst_over_the_limit_gets_429_and_others_are_unaffected():
    async with gateway_in_front(rate_limit="5/minute") as gateway:
        greedy, polite = bearer("greedy"), bearer("polite")
        statuses = [(await gateway.get("/api/svc/who", headers=greedy)).status_code for _ in range(8)]
        assert statuses == [200] * 5 + [429] * 3
        refused = await gateway.get("/api/svc/who", headers=greedy)
        assert 0 < int(refused.headers["retry-after"]) <= 60
        assert (await gateway.get("/api/svc/who", headers=polite)).status_code == 200
        metrics = (await gateway.get("/metrics")).text
        assert 'smartgym_rate_limited_total{route="svc"} 4.0' in metrics


async def test_limits_are_shared_by_replicas_through_redis():
    from tests.support.infra import require

    require("Redis", "redis://127.0.0.1:6379", 6379)
    sync_s = 0.05
    async with serving(instance_app("a")) as url:
        settings = settings_for(url, rate_limit="4/minute").model_copy(
            update={"gateway_rate_limit_storage": "redis://127.0.0.1:6379", "gateway_rate_limit_sync_s": sync_s}
        )
        member = bearer(f"shared-{uuid.uuid4().hex[:6]}")
        async with asgi_client(create_app(settings)) as first, asgi_client(create_app(settings)) as second:
            statuses = []
            for gateway in (first, second, first, second, first, second):
                statuses.append((await gateway.get("/api/svc/who", headers=member)).status_code)
                # Each replica sends its hits and reads the other's at its next sync.
                await asyncio.sleep(4 * sync_s)
            assert statuses == [200, 200, 200, 200, 429, 429]


async def test_with_redis_out_of_reach_requests_are_still_limited_and_served():
    dead_port = free_port()
    async with serving(instance_app("a")) as url:
        settings = settings_for(url, rate_limit="3/minute").model_copy(
            update={"gateway_rate_limit_storage": f"redis://127.0.0.1:{dead_port}", "gateway_rate_limit_sync_s": 0.05}
        )
        member = bearer(f"alone-{uuid.uuid4().hex[:6]}")
        async with asgi_client(create_app(settings)) as gateway:
            statuses = []
            for _ in range(4):
                statuses.append((await gateway.get("/api/svc/who", headers=member)).status_code)
                await asyncio.sleep(0.1)  # syncs fail meanwhile
            assert statuses == [200, 200, 200, 429]  # this replica's own count still limits
            metrics = (await gateway.get("/metrics")).text
            failures = next(
                line
                for line in metrics.splitlines()
                if line.startswith("smartgym_gateway_rate_limit_sync_failures_total")
            )
            assert float(failures.split()[-1]) >= 1


async def test_cors_admits_the_consoles_and_nobody_else():
    async with serving(instance_app("a")) as url:
        settings = settings_for(url).model_copy(update={"gateway_cors_origins": ("https://console.smartgym.example",)})
        async with asgi_client(create_app(settings)) as gateway:
            preflight = {"access-control-request-method": "GET", "access-control-request-headers": "authorization"}
            allowed = await gateway.options(
                "/api/svc/who", headers={"origin": "https://console.smartgym.example", **preflight}
            )
            assert allowed.status_code == 200
            assert allowed.headers["access-control-allow-origin"] == "https://console.smartgym.example"
            other = await gateway.options("/api/svc/who", headers={"origin": "https://evil.example", **preflight})
            assert "access-control-allow-origin" not in other.headers


async def test_breaker_opens_fails_fast_and_closes_when_the_upstream_returns():
    port = free_port()
    settings = settings_for(f"http://127.0.0.1:{port}", timeout_s=1).model_copy(
        update={"breaker_fail_max": 3, "breaker_reset_timeout_s": 0.5}
    )
    jwks_port = free_port()
    async with serving(instance_app("jwks"), jwks_port) as jwks_url:
        settings = settings.model_copy(update={"auth_url": jwks_url})
        async with asgi_client(create_app(settings)) as gateway:
            async with serving(instance_app("a"), port):
                assert (await gateway.get("/api/svc/who", headers=bearer())).status_code == 200
            # the upstream is gone: failures open the breaker, then calls fail fast
            statuses = [(await gateway.get("/api/svc/who", headers=bearer())).status_code for _ in range(5)]
            assert statuses[:3] == [502, 502, 502]
            assert statuses[3:] == [503, 503]
            async with serving(instance_app("a"), port):
                await asyncio.sleep(0.6)  # past the reset timeout: the next call is the probe
                for instance in (await gateway.get("/admin/breakers", headers=bearer(roles=(Role.OPERATOR,)))).json():
                    assert instance["state"] == "open"
                assert (await gateway.get("/api/svc/who", headers=bearer())).status_code == 200
                states = (await gateway.get("/admin/breakers", headers=bearer(roles=(Role.OPERATOR,)))).json()
                assert [item["state"] for item in states] == ["closed"]


def test_the_retry_budget_caps_retries_at_a_fifth_of_requests():
    from common.breaker import AsyncCircuitBreaker
    from gateway.proxy import Instance, Pool

    pool = Pool("svc", [Instance("http://a"), Instance("http://b")], AsyncCircuitBreaker("svc"), eject_s=10)
    assert sum(pool.spend_retry() for _ in range(15)) == 10  # the saved allowance, then nothing
    for _ in range(10):
        pool.earn_retry()  # ten requests earn two retries
    assert [pool.spend_retry() for _ in range(3)] == [True, True, False]


async def test_a_headless_service_name_becomes_one_instance_per_pod():
    port = free_port()
    answers = {"running-headless.test": ["127.0.0.1", "127.0.0.2"]}

    async def dns(host: str, _port: int) -> list[str]:
        return answers[host]

    settings = settings_for(f"http://running-headless.test:{port}")
    async with serving(instance_app("jwks")) as jwks_url:
        settings = settings.model_copy(update={"auth_url": jwks_url})
        async with (
            serving(instance_app("pod-1"), port, host="127.0.0.1"),
            serving(instance_app("pod-2"), port, host="127.0.0.2"),
        ):
            app = create_app(settings, resolver=dns)
            async with asgi_client(app) as gateway:
                seen = {(await gateway.get("/api/svc/who", headers=bearer())).json()["instance"] for _ in range(10)}
                assert seen == {"pod-1", "pod-2"}
                answers["running-headless.test"] = ["127.0.0.2"]  # pod-1 scaled away
                await app.state.upstreams.discovery.refresh()
                seen = {(await gateway.get("/api/svc/who", headers=bearer())).json()["instance"] for _ in range(6)}
                assert seen == {"pod-2"}


async def test_the_real_resolver_expands_a_name():
    from gateway.proxy import resolve_addresses

    assert "127.0.0.1" in await resolve_addresses("localhost", 80)


async def test_streamed_uploads_reach_the_upstream_whole():
    async with gateway_in_front(stream_body=True, max_body_bytes=8 * 1024 * 1024) as gateway:

        async def chunks():
            for _ in range(64):
                yield b"y" * 65536

        sent = await gateway.post("/api/svc/echo", content=chunks(), headers=bearer())
        assert sent.json() == {"bytes": 64 * 65536}
        too_big = await gateway.post(
            "/api/svc/echo", content=b"z" * 100, headers={**bearer(), "content-length": str(9 * 1024 * 1024)}
        )
        assert too_big.status_code == 413
