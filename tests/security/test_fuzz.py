"""Every service's API fuzzed from its own OpenAPI: directly and through the gateway, with
a valid token, with none and with a forged one. Nothing may answer 5xx or break its
documented response schema."""

from __future__ import annotations

import json

import httpx
import pytest

from gateway.app import create_app as create_gateway
from gateway.settings import GatewaySettings
from tests.security.fuzzing import fuzz
from tests.security.route_policy import Caller
from tests.security.services import FORGED_OPERATOR, Callers, built_service
from tests.support import tokens
from tests.support.apps import serving

FUZZED = ("auth", "access", "monitoring", "notification", "running", "helper", "branch_owner", "search", "mlops")
# Where the gateway's route table puts each service.
GATEWAY_PREFIX = {
    "auth": "/api/auth",
    "access": "/api/access",
    "monitoring": "/api/monitoring",
    "notification": "/api/notifications",
    "running": "/api/running",
    "helper": "/api/helper",
    "branch_owner": "/api/branch-owner",
    "search": "/api/search",
    "mlops": "/api/mlops",
}


def report(outcome) -> str:
    return outcome.output[-6000:]


@pytest.mark.parametrize("service", FUZZED)
async def test_fuzzing_finds_no_server_error_and_no_schema_violation(service, tmp_path):
    async with built_service(service, tmp_path) as built, serving(built.app) as url:
        callers = Callers(built.issuer())
        # The operator reaches the most code: the thorough pass. A customer, no token and a
        # forged one take turns in one quick pass (each route's answer to each of them is
        # test_route_matrix's).
        refused = [callers.headers(Caller.CUSTOMER), {}, FORGED_OPERATOR]
        runs = [("operator", [callers.headers(Caller.OPERATOR)], True)]
        runs += [("a customer, no token and a forged token", refused, False)]
        cases = 0
        for who, headers, thorough in runs:
            outcome = await fuzz(f"{url}/openapi.json", callers=headers, thorough=thorough)
            assert outcome.returncode == 0, f"as {who}:\n{report(outcome)}"
            assert outcome.cases > 0, outcome.output[-2000:]
            cases += outcome.cases
        print(f"{service}: {cases} fuzz cases, 0 failures")


@pytest.mark.parametrize("service", FUZZED)
async def test_fuzzing_through_the_gateway(service, tmp_path):
    async with built_service(service, tmp_path) as built, serving(built.app) as url:
        async with httpx.AsyncClient() as client:
            document = (await client.get(f"{url}/openapi.json")).json()
        schema = tmp_path / f"{service}-openapi.json"
        # The probes are not routed by the gateway: fuzz what clients can reach.
        for probe in ("/healthz", "/readyz", "/metrics"):
            document["paths"].pop(probe, None)
        schema.write_text(json.dumps(document))
        settings = GatewaySettings(
            environment="test",
            **{f"{name}_url": url for name in FUZZED},
            gateway_ip_rate_limit="100000/second",
        )
        # auth checks its own keys; the others trust the test key, and so must the gateway.
        gateway = create_gateway(settings, keys=None if service == "auth" else tokens.key_cache())
        async with serving(gateway) as gateway_url:
            callers = Callers(built.issuer())
            base = gateway_url + GATEWAY_PREFIX[service]
            # The operator and no token take turns in one pass.
            outcome = await fuzz(
                str(schema), base_url=base, callers=[callers.headers(Caller.OPERATOR), {}], thorough=False
            )
            assert outcome.returncode == 0, f"through the gateway:\n{report(outcome)}"
            print(f"{service} through the gateway: {outcome.cases} fuzz cases, 0 failures")
