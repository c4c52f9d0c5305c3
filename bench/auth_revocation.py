"""How fast a logout reaches another service's replica, and what checking revocations
costs every request.

Auth runs on PostgreSQL and RabbitMQ; a second kernel stands in for another service's
replica (its own broker connection and verifier). For each of n logouts: the time from
auth's answer to the replica applying the revocation (outbox → relay → broker →
broadcast queue). Then the verifier's cached path with no revocations against 100k
revocations in force (the baseline is measured in the same run).

    .venv/bin/python bench/auth_revocation.py [--logouts 200]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from auth.app import create_app
from bench._common import cell, emit, ensure_services, fail, machine, summary, table
from common.db import service_metadata
from common.events.envelope import EventCatalog
from common.kernel import build_kernel, remote_jwks
from common.migrations import upgrade
from common.security import InvalidToken, TokenVerifier
from common.settings import PlatformSettings
from tests.support.apps import FAST_HASHER, asgi_client, free_port, serving
from tests.support.infra import PG_ADMIN_URL, RABBITMQ_URL, PostgresDatabases

PASSWORD = "correct horse battery"


async def propagation(settings: PlatformSettings, logouts: int) -> tuple[list[float], int]:
    app = create_app(settings, hasher=FAST_HASHER)
    port = int(settings.auth_url.rsplit(":", 1)[1])
    replica = build_kernel(
        "running", settings, metadata=service_metadata(), keys=remote_jwks(settings), catalog=EventCatalog()
    )
    arrived: dict[str, float] = {}
    original = replica.verifier.revocations.add

    def add(**kwargs: object) -> None:
        original(**kwargs)  # type: ignore[arg-type]
        if kwargs.get("session_id"):
            arrived.setdefault(str(kwargs["session_id"]), time.perf_counter())

    replica.verifier.revocations.add = add  # type: ignore[method-assign]
    latencies, failures = [], 0
    async with serving(app, port), asgi_client(app) as client:
        await replica.start()
        try:
            await client.post("/signup", json={"email": "bench@example.com", "password": PASSWORD})
            for index in range(logouts):
                tokens = (await client.post("/login", json={"email": "bench@example.com", "password": PASSWORD})).json()
                session = (await replica.verifier.verify(tokens["access_token"])).session_id
                await client.post("/logout", json={"refresh_token": tokens["refresh_token"]})
                answered = time.perf_counter()
                deadline = answered + 5.0
                while session not in arrived and time.perf_counter() < deadline:
                    await asyncio.sleep(0.0005)
                if session not in arrived:
                    failures += 1
                    continue
                latencies.append((arrived[session] - answered) * 1000)
                try:
                    await replica.verifier.verify(tokens["access_token"])
                    failures += 1  # applied but not refused: a failure too
                except InvalidToken:
                    pass
                if index % 50 == 49:
                    print(f"  {index + 1}/{logouts} logouts", file=sys.stderr)
        finally:
            await replica.stop()
    return latencies, failures


async def check_cost(settings: PlatformSettings, revocations: int, rounds: int = 20_000) -> float:
    """Microseconds per cached verify with ``revocations`` in force."""
    from common.security import JwksCache, Role, SigningKey, TokenIssuer, jwks_document

    key = SigningKey.generate()
    verifier = TokenVerifier(
        JwksCache.static(jwks_document([key])), issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )
    now = time.time()
    for _ in range(revocations // 2):
        verifier.revocations.add(subject=str(uuid.uuid4()), issued_before=now, expires_at=now + 900)
        verifier.revocations.add(session_id=uuid.uuid4().hex, issued_before=now, expires_at=now + 900)
    from datetime import timedelta

    issuer = TokenIssuer(key, issuer=settings.jwt_issuer, audience=settings.jwt_audience, ttl=timedelta(minutes=15))
    token = issuer.issue(str(uuid.uuid4()), [Role.CUSTOMER], session_id=uuid.uuid4().hex)
    await verifier.verify(token)
    started = time.perf_counter()
    for _ in range(rounds):
        await verifier.verify(token)
    return (time.perf_counter() - started) / rounds * 1e6


async def main(args: argparse.Namespace) -> None:
    ensure_services()
    pg = PostgresDatabases(PG_ADMIN_URL)
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    try:
        url = pg.create("bench_revoke")
        upgrade("auth", url)
        settings = PlatformSettings(
            environment="test",
            data_dir=Path("/tmp") / namespace,
            broker_url=RABBITMQ_URL,
            bus_namespace=namespace,
            auth_database_url=url,
            auth_url=f"http://127.0.0.1:{free_port()}",
        )
        upgrade("running", settings.database_url("running"))  # the replica's own (empty) database
        latencies, failures = await propagation(settings, args.logouts)
        await check_cost(settings, 0)  # warm-up: the first round pays for imports and caches
        baseline = await check_cost(settings, 0)
        loaded = await check_cost(settings, 100_000)
    finally:
        pg.drop_all()
        from tests.support.amqp import delete_namespace

        await delete_namespace(RABBITMQ_URL, namespace)
    spread = summary(latencies)
    table(
        f"Logout → revocation applied on another replica (PostgreSQL + RabbitMQ, {machine()})",
        ["n", "failures", "p50 ms", "p95 ms", "p99 ms", "max ms"],
        [[len(latencies), failures, *(cell(spread, key, 1) for key in ("p50", "p95", "p99", "max"))]],
    )
    table(
        "Cached token verification, with revocations in force (20k verifies each)",
        ["revocations in force", "µs per verify", "ratio"],
        [["0 (baseline)", f"{baseline:.2f}", "1.00"], ["100,000", f"{loaded:.2f}", f"{loaded / baseline:.2f}"]],
    )
    if failures:
        fail(f"{failures} requests failed")
    emit(
        {
            "logout_to_replica_p50_ms": round(spread["p50"], 1),
            "logout_to_replica_p95_ms": round(spread["p95"], 1),
            "logout_to_replica_p99_ms": round(spread["p99"], 1),
            "n": len(latencies),
            "failed_requests": failures,
            "verify_cached_us": round(baseline, 2),
            "verify_cached_100k_revocations_us": round(loaded, 2),
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logouts", type=int, default=200)
    asyncio.run(main(parser.parse_args()))
