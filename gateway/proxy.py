"""Route matching and forwarding (no web framework here)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpx

from common.breaker import AsyncCircuitBreaker, breaker_for
from common.http import ServiceClient
from common.observability import Metrics
from common.settings import PlatformSettings
from gateway.settings import RouteConfig

# Connection-scoped headers (RFC 9110 §7.6.1) never cross a proxy.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


@dataclass(frozen=True)
class Match:
    route: RouteConfig
    upstream_path: str

    @property
    def is_public(self) -> bool:
        return self.upstream_path in self.route.public


class RouteTable:
    def __init__(self, routes: Iterable[RouteConfig]) -> None:
        # Longest prefix first, so /api/auth/admin can sit beside /api/auth.
        self._routes = sorted(routes, key=lambda route: len(route.prefix), reverse=True)

    def match(self, path: str) -> Match | None:
        for route in self._routes:
            if path == route.prefix or path.startswith(route.prefix + "/"):
                return Match(route, path[len(route.prefix) :] or "/")
        return None


class Upstreams:
    """One pooled client and one breaker per upstream service."""

    def __init__(self, routes: Iterable[RouteConfig], settings: PlatformSettings, metrics: Metrics) -> None:
        self._clients: dict[str, ServiceClient] = {}
        for route in routes:
            if route.service in self._clients:
                continue
            breaker = breaker_for(route.service, settings, metrics)
            self._clients[route.service] = ServiceClient(
                route.service, route.upstream, breaker=breaker, timeout_s=route.timeout_s
            )

    def client(self, service: str) -> ServiceClient:
        return self._clients[service]

    def breakers(self) -> list[AsyncCircuitBreaker]:
        return [client.breaker for client in self._clients.values()]

    async def forward(
        self,
        match: Match,
        *,
        method: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        client_address: str | None,
    ) -> httpx.Response:
        forwarded = {name: value for name, value in headers.items() if name.lower() not in HOP_BY_HOP}
        if client_address:
            prior = headers.get("x-forwarded-for")
            forwarded["x-forwarded-for"] = f"{prior}, {client_address}" if prior else client_address
        url = match.upstream_path + (f"?{query}" if query else "")
        return await self.client(match.route.service).request(method, url, headers=forwarded, content=body)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
