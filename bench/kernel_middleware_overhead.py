"""Per-request overhead of the kernel (request id + metrics + JSON access log middleware,
and the RS256 bearer-token dependency) against a bare FastAPI handler, same run.

Requests are driven straight through ASGI in this process, so the figures are the
framework and kernel cost alone, without sockets or a client.

    python bench/kernel_middleware_overhead.py [--requests 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from collections.abc import MutableMapping
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the repo root

from fastapi import APIRouter, FastAPI

from bench._common import cell, emit, machine, summary, table
from common.api import CurrentPrincipal, create_service_app
from common.kernel import build_kernel
from common.observability import JsonFormatter
from common.security import JwksCache, Role, SigningKey, TokenIssuer, jwks_document
from common.settings import PlatformSettings


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    return app


def kernel_app(key: SigningKey, *, with_auth: bool) -> FastAPI:
    settings = PlatformSettings(environment="test")
    kernel = build_kernel("bench", settings, metadata=None, keys=JwksCache.static(jwks_document([key])))
    router = APIRouter()
    if with_auth:

        @router.get("/ping")
        async def ping_authenticated(principal: CurrentPrincipal) -> dict[str, bool]:
            return {"ok": bool(principal.subject)}
    else:

        @router.get("/ping")
        async def ping() -> dict[str, bool]:
            return {"ok": True}

    return create_service_app(kernel, title="bench", routers=[router])


def auth_only_app(key: SigningKey) -> FastAPI:
    """Bare FastAPI plus the bearer dependency, no kernel middleware."""
    settings = PlatformSettings(environment="test")
    kernel = build_kernel("bench", settings, metadata=None, keys=JwksCache.static(jwks_document([key])))
    app = FastAPI()
    app.state.kernel = kernel

    @app.get("/ping")
    async def ping(principal: CurrentPrincipal) -> dict[str, bool]:
        return {"ok": bool(principal.subject)}

    return app


async def drive(app: FastAPI, requests: int, headers: list[tuple[bytes, bytes]]) -> list[float]:
    """Per-request wall time in microseconds, over ``requests`` sequential calls."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/ping",
        "raw_path": b"/ping",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("bench", 80),
    }
    statuses: list[int] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(int(message["status"]))

    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        await app(dict(scope), receive, send)
        timings.append((time.perf_counter() - started) * 1e6)
    if set(statuses) != {200}:
        raise RuntimeError(f"unexpected statuses {set(statuses)}")
    return timings


async def main(args: argparse.Namespace) -> None:
    # The access log is formatted as in production, then thrown away.
    handler = logging.FileHandler(os.devnull)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger().setLevel(logging.INFO)

    key = SigningKey.generate()
    issuer = TokenIssuer(key, issuer="smartgym-auth", audience="smartgym", ttl=timedelta(hours=1))
    token = issuer.issue("member-1", [Role.CUSTOMER])
    auth_header = [(b"authorization", f"Bearer {token}".encode())]
    variants = {
        "bare FastAPI handler": (bare_app(), []),
        "+ kernel middleware": (kernel_app(key, with_auth=False), []),
        "+ bearer dependency only": (auth_only_app(key), auth_header),
        "kernel middleware + bearer": (kernel_app(key, with_auth=True), auth_header),
    }
    for app, headers in variants.values():
        await drive(app, 200, headers)  # warm up: caches, JWKS, route compilation
    results: dict[str, list[float]] = {name: [] for name in variants}
    round_medians: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):  # interleaved rounds: machine noise hits every variant alike
        for name, (app, headers) in variants.items():
            timings = await drive(app, args.requests, headers)
            results[name].extend(timings)
            round_medians[name].append(statistics.median(timings))

    verifier = variants["+ bearer dependency only"][0].state.kernel.verifier
    started = time.perf_counter()
    for _ in range(1000):
        await verifier._verify(token)  # what a token costs the first time it is seen
    verify_uncached_us = (time.perf_counter() - started) / 1000 * 1e6

    base = statistics.median(round_medians["bare FastAPI handler"])
    rows = []
    medians = {}
    for name in variants:
        median = statistics.median(round_medians[name])
        medians[name] = median
        spread = summary(results[name])
        rows.append(
            [
                name,
                f"{median:.1f}",
                int(spread["n"]),
                cell(spread, "p95", 1),
                cell(spread, "p99", 1),
                f"{median - base:+.1f}",
                f"{median / base:.2f}x",
            ]
        )
    table(
        f"Per-request cost in µs, {args.rounds} rounds x {args.requests} requests ({machine()})",
        ["variant", "median of round medians", "n", "p95", "p99", "added", "ratio"],
        rows,
    )
    full = medians["kernel middleware + bearer"]
    print(
        f"\nfirst sight of a token (RS256 verify, no cache): {verify_uncached_us:.1f} µs; later requests reuse"
        " the verified principal until min(exp, 30 s)"
    )
    emit(
        {
            "bare_us": round(base, 1),
            "middleware_us": round(medians["+ kernel middleware"], 1),
            "auth_dependency_us": round(medians["+ bearer dependency only"], 1),
            "kernel_full_us": round(full, 1),
            "kernel_overhead_us": round(full - base, 1),
            "kernel_overhead_ratio": round(full / base, 2),
            "verify_uncached_us": round(verify_uncached_us, 1),
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
