"""The gateway in front of a real upstream on loopback: edge authentication, roles,
unknown routes, and a breaker that fails fast when the upstream dies."""

from __future__ import annotations

import time

import pytest
from fastapi import FastAPI, Request

from common.security import Role, jwks_document
from gateway.app import create_app
from gateway.settings import GatewaySettings, RouteConfig
from tests.support import tokens
from tests.support.apps import asgi_client, free_port, serving


def upstream_app() -> FastAPI:
    """Serves the test issuer's JWKS and echoes what the gateway forwarded."""
    app = FastAPI()

    @app.get("/.well-known/jwks.json")
    async def jwks() -> dict[str, object]:
        return jwks_document([tokens.signing_key()])

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def echo(path: str, request: Request) -> dict[str, object]:
        return {
            "path": "/" + path,
            "query": request.url.query,
            "authorization": request.headers.get("authorization"),
            "request_id": request.headers.get("x-request-id"),
            "body": (await request.body()).decode(),
        }

    return app


def gateway_settings(upstream: str, dead: str) -> GatewaySettings:
    return GatewaySettings(
        environment="test",
        auth_url=upstream,
        breaker_fail_max=2,
        breaker_reset_timeout_s=30,
        gateway_routes=(
            RouteConfig(prefix="/api/auth", service="auth", upstreams=upstream, public=("/login",)),
            RouteConfig(prefix="/api/ops", service="ops", upstreams=upstream, roles=(Role.OPERATOR,), methods=("GET",)),
            RouteConfig(prefix="/api/dead", service="dead", upstreams=dead, timeout_s=1),
            RouteConfig(
                prefix="/api/owner", service="owner", upstreams=upstream, branch_pattern=r"^/branches/(?P<branch>[^/]+)"
            ),
        ),
    )


@pytest.fixture
async def gateway():
    async with serving(upstream_app()) as upstream:
        dead = f"http://127.0.0.1:{free_port()}"
        async with asgi_client(create_app(gateway_settings(upstream, dead))) as client:
            yield client


def bearer(roles=(Role.CUSTOMER,)) -> dict[str, str]:
    return tokens.bearer("user-1", roles)


async def test_public_route_needs_no_token_and_prefix_is_stripped(gateway):
    response = await gateway.post("/api/auth/login?x=1", content=b'{"a": 1}', headers={"x-request-id": "rid-1"})
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["path"] == "/login"
    assert echoed["query"] == "x=1"
    assert echoed["body"] == '{"a": 1}'
    assert echoed["request_id"] == "rid-1"  # the correlation id crosses the hop


async def test_protected_route_forwards_the_token_for_defence_in_depth(gateway):
    headers = bearer()
    response = await gateway.get("/api/auth/me", headers=headers)
    assert response.status_code == 200
    assert response.json()["authorization"] == headers["authorization"]


@pytest.mark.parametrize("case", sorted(tokens.attack_tokens()))
async def test_attack_tokens_are_refused_at_the_edge(gateway, case):
    response = await gateway.get("/api/auth/me", headers={"authorization": f"Bearer {tokens.attack_tokens()[case]}"})
    assert response.status_code == 401
    assert response.json()["detail"]


async def test_missing_token_is_401_and_wrong_role_is_403(gateway):
    assert (await gateway.get("/api/auth/me")).status_code == 401
    assert (await gateway.get("/api/ops/x", headers=bearer())).status_code == 403
    assert (await gateway.get("/api/ops/x", headers=bearer((Role.OPERATOR,)))).status_code == 200


async def test_unknown_route_is_404(gateway):
    assert (await gateway.get("/api/kitchen/sink", headers=bearer())).status_code == 404
    assert (await gateway.get("/api/authx", headers=bearer())).status_code == 404  # not a prefix match


async def test_dead_upstream_is_502_then_the_breaker_fails_fast_with_503(gateway):
    for _ in range(2):
        assert (await gateway.get("/api/dead/x", headers=bearer())).status_code == 502
    started = time.perf_counter()
    response = await gateway.get("/api/dead/x", headers=bearer())
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert (time.perf_counter() - started) * 1000 < 50
    assert (await gateway.get("/admin/breakers", headers=bearer())).status_code == 403
    snapshot = await gateway.get("/admin/breakers", headers=bearer((Role.OPERATOR,)))
    states = {item["name"]: item["state"] for item in snapshot.json()}
    assert states == {"auth": "closed", "ops": "closed", "dead": "open", "owner": "closed"}


async def test_a_branch_owner_cannot_reach_another_branch(gateway):
    owner = {"authorization": f"Bearer {tokens.issuer().issue('owner-1', [Role.BRANCH_OWNER], ['gangnam-1'])}"}
    operator = bearer((Role.OPERATOR,))
    assert (await gateway.get("/api/owner/branches/gangnam-1/reviews", headers=owner)).status_code == 200
    idor = await gateway.get("/api/owner/branches/hongdae-2/reviews", headers=owner)
    assert idor.status_code == 403
    assert idor.json()["detail"] == "not permitted for this branch"
    assert (await gateway.get("/api/owner/branches/hongdae-2/reviews", headers=operator)).status_code == 200
    metrics = (await gateway.get("/metrics")).text
    assert 'smartgym_gateway_upstream_seconds_count{route="owner",status="200"} 2.0' in metrics


async def test_methods_outside_the_route_table_are_405_with_allow(gateway):
    refused = await gateway.post("/api/ops/x", headers=bearer((Role.OPERATOR,)))
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET"
    assert (await gateway.get("/api/ops/x", headers=bearer((Role.OPERATOR,)))).status_code == 200
