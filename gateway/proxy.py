"""Route matching, instance choice and forwarding (no web framework here).

Forwarding uses one pooled aiohttp session (keep-alive to every upstream); see
docs/adr/0011-gateway-proxy-transport.md for why not httpx. Responses are streamed back
as they arrive; request bodies are buffered up to the route's limit, which is what makes
a connect-error retry on another instance safe.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from common.breaker import AsyncCircuitBreaker, breaker_for
from common.context import REQUEST_ID_HEADER, current_correlation_id
from common.observability import Metrics
from common.periodic import Periodic
from gateway.settings import GatewaySettings, RouteConfig

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
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class Match:
    route: RouteConfig
    upstream_path: str

    @property
    def is_public(self) -> bool:
        """Public paths are exact, or prefixes when they end with a slash (a path that
        carries its own credential, such as a shared link's token)."""
        path = self.upstream_path
        return any(path == public or (public.endswith("/") and path.startswith(public)) for public in self.route.public)

    @property
    def branch(self) -> str | None:
        """The branch a branch-scoped route's path names, if any."""
        if self.route.branch_pattern is None:
            return None
        found = re.match(self.route.branch_pattern, self.upstream_path)
        return found.group("branch") if found else None


class RouteTable:
    def __init__(self, routes: Iterable[RouteConfig]) -> None:
        # Longest prefix first, so /api/auth/admin can sit beside /api/auth.
        self._routes = sorted(routes, key=lambda route: len(route.prefix), reverse=True)

    def match(self, path: str) -> Match | None:
        for route in self._routes:
            if path == route.prefix or path.startswith(route.prefix + "/"):
                return Match(route, path[len(route.prefix) :] or "/")
        return None


@dataclass
class Instance:
    url: str
    outstanding: int = 0
    ejected_until: float = 0.0


@dataclass
class Pool:
    """The instances of one upstream service: least outstanding requests first (ties in
    turn); an instance that refused a connection sits out a cool-down (passive health)."""

    service: str
    instances: list[Instance]
    breaker: AsyncCircuitBreaker
    eject_s: float
    _turn: itertools.count[int] = field(default_factory=itertools.count)
    # Retry budget, in tenths of a retry: each request earns a fifth of a retry, up to ten
    # saved; a retry spends one. When an upstream is failing everywhere, retries cannot
    # multiply the load.
    _retry_tenths: int = 100

    def earn_retry(self) -> None:
        self._retry_tenths = min(100, self._retry_tenths + 2)

    def spend_retry(self) -> bool:
        if self._retry_tenths >= 10:
            self._retry_tenths -= 10
            return True
        return False

    def replace_addresses(self, urls: list[str]) -> None:
        """Take a fresh instance list (from discovery), keeping the state of known ones."""
        known = {item.url: item for item in self.instances}
        fresh = [known.get(url) or Instance(url) for url in dict.fromkeys(urls)]
        if fresh:
            self.instances = fresh

    def pick(self, tried: set[str]) -> Instance | None:
        now = time.monotonic()
        candidates = [item for item in self.instances if item.url not in tried]
        healthy = [item for item in candidates if item.ejected_until <= now] or candidates  # all sick: try anyway
        if not healthy:
            return None
        least = min(item.outstanding for item in healthy)
        tied = [item for item in healthy if item.outstanding == least]
        return tied[next(self._turn) % len(tied)]

    def eject(self, instance: Instance) -> None:
        instance.ejected_until = time.monotonic() + self.eject_s

    def snapshot(self) -> dict[str, object]:
        now = time.monotonic()
        return {
            **self.breaker.snapshot(),
            "instances": [
                {"url": item.url, "outstanding": item.outstanding, "ejected": item.ejected_until > now}
                for item in self.instances
            ],
        }


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to: one for a ClusterIP Service, one per pod for a
    Kubernetes headless Service."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class Discovery:
    """Re-resolves upstream host names so a headless Service's pods become instances."""

    def __init__(
        self, pools: dict[str, Pool], routes: Iterable[RouteConfig], *, resolver: Resolver, interval_s: float = 10.0
    ) -> None:
        self._targets: dict[str, list[URL]] = {}
        for route in routes:
            named = [URL(url) for url in route.upstreams if not _is_address(URL(url).host or "")]
            if named:
                self._targets.setdefault(route.service, named)
        self._pools = pools
        self._resolver = resolver
        self._periodic = Periodic("gateway-discovery", interval_s, self.refresh)

    async def refresh(self) -> None:
        for service, urls in self._targets.items():
            expanded: list[str] = []
            for url in urls:
                port = url.port or 80
                try:
                    addresses = await self._resolver(url.host or "", port)
                except OSError:
                    continue  # keep what we had: a DNS blip must not empty the pool
                for address in addresses:
                    host = f"[{address}]" if ":" in address else address
                    expanded.append(f"{url.scheme}://{host}:{port}")
            self._pools[service].replace_addresses(expanded)

    async def start(self) -> None:
        if self._targets:
            await self.refresh()
            await self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class UpstreamUnreachable(Exception):
    pass


class UpstreamTimeout(Exception):
    pass


class Upstreams:
    """One pool, one breaker per upstream service, one shared connection pool."""

    def __init__(
        self,
        routes: Iterable[RouteConfig],
        settings: GatewaySettings,
        metrics: Metrics,
        *,
        resolver: Resolver = resolve_addresses,
    ) -> None:
        routes = list(routes)
        self._pools: dict[str, Pool] = {}
        for route in routes:
            if route.service not in self._pools:
                self._pools[route.service] = Pool(
                    route.service,
                    [Instance(url.rstrip("/")) for url in route.upstreams],
                    breaker_for(route.service, settings, metrics),
                    settings.gateway_eject_s,
                )
        self._session: aiohttp.ClientSession | None = None
        # Long-lived sockets get their own connections: a few hundred live runs must not
        # take the keep-alive pool every HTTP request needs.
        self._ws_session: aiohttp.ClientSession | None = None
        self._per_host = settings.gateway_pool_per_host
        self.discovery = Discovery(self._pools, routes, resolver=resolver)

    async def start(self) -> None:
        await self.discovery.start()
        connector = aiohttp.TCPConnector(
            limit=max(512, self._per_host), limit_per_host=self._per_host, keepalive_timeout=30, ttl_dns_cache=10
        )
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
        )
        # No pool limit here: open sockets are bounded by the gateway's socket slots.
        ws_connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=10)
        self._ws_session = aiohttp.ClientSession(connector=ws_connector, cookie_jar=aiohttp.DummyCookieJar())

    async def aclose(self) -> None:
        await self.discovery.stop()
        for session in (self._session, self._ws_session):
            if session is not None:
                await session.close()

    def pool(self, service: str) -> Pool:
        return self._pools[service]

    def breakers(self) -> list[dict[str, object]]:
        return [pool.snapshot() for pool in self._pools.values()]

    async def connect_websocket(self, match: Match, *, query: str, token: str) -> aiohttp.ClientWebSocketResponse:
        """A WebSocket to an instance of the route's upstream, carrying the caller's token."""
        assert self._ws_session is not None, "Upstreams.start() not called"
        route, pool = match.route, self._pools[match.route.service]
        session = self._ws_session
        headers = {"authorization": f"Bearer {token}"} if token else {}
        correlation_id = current_correlation_id()
        if correlation_id:
            headers[REQUEST_ID_HEADER] = correlation_id
        path = match.upstream_path + (f"?{query}" if query else "")

        async def connect() -> aiohttp.ClientWebSocketResponse:
            tried: set[str] = set()
            for _ in range(1 + route.retries):
                instance = pool.pick(tried)
                if instance is None:
                    break
                tried.add(instance.url)
                try:
                    return await asyncio.wait_for(
                        session.ws_connect(
                            instance.url.replace("http", "ws", 1) + path, headers=headers, heartbeat=30.0
                        ),
                        timeout=route.timeout_s,
                    )
                except aiohttp.ClientConnectorError:
                    pool.eject(instance)
                except TimeoutError as exc:
                    raise UpstreamTimeout(route.service) from exc
                except aiohttp.ClientError as exc:
                    raise UpstreamUnreachable(f"{route.service}: {type(exc).__name__}") from exc
            raise UpstreamUnreachable(route.service)

        return await pool.breaker.call(connect)

    async def forward(
        self,
        match: Match,
        *,
        method: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes | AsyncIterator[bytes],
        client_address: str | None,
    ) -> aiohttp.ClientResponse:
        """The upstream's response (headers read, body not yet); the caller streams and
        releases it. Raises CircuitOpenError, UpstreamUnreachable or UpstreamTimeout."""
        assert self._session is not None, "Upstreams.start() not called"
        route, pool = match.route, self._pools[match.route.service]
        forwarded = {name: value for name, value in headers.items() if name.lower() not in HOP_BY_HOP}
        if client_address:
            prior = headers.get("x-forwarded-for")
            forwarded["x-forwarded-for"] = f"{prior}, {client_address}" if prior else client_address
        correlation_id = current_correlation_id()
        if correlation_id:
            forwarded[REQUEST_ID_HEADER] = correlation_id
        path = match.upstream_path + (f"?{query}" if query else "")
        replayable = isinstance(body, bytes)
        attempts = 1 + (route.retries if method in IDEMPOTENT and replayable else 0)
        # The route's timeout bounds the wait for the response headers (wait_for below),
        # not every read of the body: a stream (Server-Sent Events) may be quiet for
        # minutes. The body's reads are bounded by the caller (gateway.api), per kind.
        timeout = aiohttp.ClientTimeout(total=None, connect=min(2.0, route.timeout_s), sock_read=None)
        session = self._session

        async def attempt_all() -> aiohttp.ClientResponse:
            tried: set[str] = set()
            last_error: Exception | None = None
            pool.earn_retry()
            for attempt in range(attempts):
                if attempt and not pool.spend_retry():
                    break  # budget spent: fail this one rather than pile onto a sick upstream
                instance = pool.pick(tried)
                if instance is None:
                    break
                tried.add(instance.url)
                instance.outstanding += 1
                try:
                    return await asyncio.wait_for(
                        session.request(
                            method,
                            instance.url + path,
                            headers=forwarded,
                            data=body if not isinstance(body, bytes) else (body or None),
                            allow_redirects=False,
                            timeout=timeout,
                        ),
                        timeout=route.timeout_s,
                    )
                except aiohttp.ClientConnectorError as exc:
                    pool.eject(instance)  # never reached the upstream: safe to try the next one
                    last_error = exc
                except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                    raise UpstreamTimeout(route.service) from exc
                except aiohttp.ClientError as exc:
                    raise UpstreamUnreachable(f"{route.service}: {type(exc).__name__}") from exc
                finally:
                    instance.outstanding -= 1
            raise UpstreamUnreachable(f"{route.service}: {type(last_error).__name__ if last_error else 'no instance'}")

        return await pool.breaker.call(attempt_all, is_failure=lambda response: response.status >= 500)
