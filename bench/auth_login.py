"""Login latency with the production Argon2id parameters, and the cost of verifying an
access token, on auth backed by PostgreSQL.

Baselines in the same run: the Argon2 verification alone (what a login cannot go below)
and the tests' cheap parameters.

    python bench/auth_login.py [--logins 40] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the repo root

import httpx
from argon2 import PasswordHasher

from auth.app import create_app
from auth.passwords import default_hasher
from bench._common import cell, emit, ensure_services, machine, summary, table
from common.migrations import upgrade
from common.security import JwksCache, TokenVerifier
from common.settings import PlatformSettings
from tests.support.infra import PG_ADMIN_URL, PostgresDatabases

PASSWORD = "a long enough password"


async def login_latencies(
    hasher: PasswordHasher, url: str, logins: int, concurrency: int
) -> tuple[list[float], float, dict[str, float]]:
    settings = PlatformSettings(environment="test", database_urls={"auth": url})
    app = create_app(settings, hasher=hasher)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://auth") as client:
            emails = [f"bench{n}@example.com" for n in range(concurrency)]
            for email in emails:
                created = await client.post("/signup", json={"email": email, "password": PASSWORD})
                assert created.status_code == 201, created.text
            latencies: list[float] = []

            async def member(email: str, count: int) -> None:
                for _ in range(count):
                    started = time.perf_counter()
                    response = await client.post("/login", json={"email": email, "password": PASSWORD})
                    latencies.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, response.text

            started = time.perf_counter()
            await asyncio.gather(*(member(email, logins // concurrency) for email in emails))
            elapsed = time.perf_counter() - started
            token = (await client.post("/login", json={"email": emails[0], "password": PASSWORD})).json()
            jwks = (await client.get("/.well-known/jwks.json")).json()
    verify_us = await verify_cost(token["access_token"], jwks, settings)
    return latencies, len(latencies) / elapsed, verify_us


async def verify_cost(token: str, jwks: dict, settings: PlatformSettings) -> dict[str, float]:
    verifier = TokenVerifier(JwksCache.static(jwks), issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    await verifier.verify(token)
    rounds = 2000
    started = time.perf_counter()
    for _ in range(rounds):
        await verifier._verify(token)  # signature and claims every time
    uncached = (time.perf_counter() - started) / rounds * 1e6
    started = time.perf_counter()
    for _ in range(rounds):
        await verifier.verify(token)  # the same token again, as clients send it
    cached = (time.perf_counter() - started) / rounds * 1e6
    return {"uncached": uncached, "cached": cached}


def hash_verify_ms(hasher: PasswordHasher, rounds: int = 10) -> float:
    stored = hasher.hash(PASSWORD)
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        hasher.verify(stored, PASSWORD)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


async def main(args: argparse.Namespace) -> None:
    ensure_services()
    pg = PostgresDatabases(PG_ADMIN_URL)
    production = default_hasher()
    cheap = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    rows = []
    results = {}
    try:
        for name, hasher in (("production Argon2id", production), ("test parameters", cheap)):
            url = pg.create("bench_auth")
            upgrade("auth", url)
            latencies, per_s, verify = await login_latencies(hasher, url, args.logins, args.concurrency)
            spread = summary(latencies)
            results[name] = (spread, per_s, verify)
            rows.append(
                [
                    name,
                    f"t={hasher.time_cost} m={hasher.memory_cost // 1024}MiB p={hasher.parallelism}",
                    f"{hash_verify_ms(hasher):.1f}",
                    int(spread["n"]),
                    cell(spread, "p50", 1),
                    cell(spread, "p95", 1),
                    cell(spread, "p99", 1),
                    f"{per_s:.1f}",
                ]
            )
    finally:
        pg.drop_all()
    table(
        f"Login through auth (PostgreSQL), {args.logins} logins by {args.concurrency} members at once ({machine()})",
        ["hasher", "parameters", "argon2 verify ms", "n", "login p50 ms", "p95 ms", "p99 ms", "logins/s"],
        rows,
    )
    spread, per_s, verify = results["production Argon2id"]
    print(
        f"\naccess token verification: {verify['uncached']:.1f} µs (RS256 + claims), "
        f"{verify['cached']:.1f} µs when the token was seen in the last 30 s"
    )
    emit(
        {
            "login_p50_ms": round(spread["p50"], 1),
            "login_p95_ms": round(spread["p95"], 1),
            "login_p99_ms": round(spread["p99"], 1),
            "logins_per_s": round(per_s, 1),
            "argon2_verify_ms": round(hash_verify_ms(production), 1),
            "verify_us": round(verify["uncached"], 1),
            "verify_cached_us": round(verify["cached"], 2),
            "concurrency": args.concurrency,
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logins", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    asyncio.run(main(parser.parse_args()))
