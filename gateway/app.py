"""The gateway's app factory."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import Counter, Histogram

from common.api import create_service_app
from common.kernel import build_kernel
from common.observability import LATENCY_BUCKETS, Metrics
from common.security import JwksCache
from gateway.api import GatewayState, router
from gateway.api import screens as screen_routes
from gateway.proxy import Resolver, RouteTable, Upstreams, resolve_addresses
from gateway.ratelimit import RateLimits
from gateway.screens import Screens, WebBuildMissing
from gateway.settings import GatewaySettings
from gateway.sockets import SocketSlots

SERVICE = "gateway"
log = logging.getLogger("smartgym.gateway")


def load_screens(settings: GatewaySettings) -> Screens | None:
    """The built screens: from the settings' directory, else those shipped with the `web`
    package. A gateway without them still routes the API (and says why in its log)."""
    root = settings.gateway_web_dir
    if root is None:
        from web import DIST

        root = DIST
    try:
        return Screens.load(root, tile_url=settings.gateway_map_tile_url)
    except WebBuildMissing as exc:
        log.warning("web screens not served: %s", exc)
        return None


def create_app(
    settings: GatewaySettings,
    *,
    metrics: Metrics | None = None,
    resolver: Resolver = resolve_addresses,
    keys: JwksCache | None = None,
) -> FastAPI:
    kernel = build_kernel(SERVICE, settings, metadata=None, metrics=metrics, keys=keys)
    upstreams = Upstreams(settings.gateway_routes, settings, kernel.metrics, resolver=resolver)
    sync_failures = Counter(
        "smartgym_gateway_rate_limit_sync_failures_total",
        "Exchanges with Redis of shared rate limits that failed (each replica limits on its own meanwhile).",
        registry=kernel.metrics.registry,
    )
    limits = RateLimits(
        settings.gateway_rate_limit_storage,
        per_address=settings.gateway_ip_rate_limit,
        sync_s=settings.gateway_rate_limit_sync_s,
        on_sync_failure=sync_failures.inc,
    )
    app = create_service_app(
        kernel,
        title="SmartGym gateway",
        routers=[router, screen_routes],
        on_start=[upstreams.start],
        on_stop=[upstreams.aclose, limits.aclose],
    )
    if settings.gateway_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.gateway_cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["authorization", "content-type", "x-request-id", "idempotency-key"],
            expose_headers=["x-request-id", "retry-after", "idempotent-replayed", "x-smartgym-refusal"],
            max_age=600,
        )
    app.state.upstreams = upstreams
    app.state.gateway = GatewayState(
        kernel=kernel,
        table=RouteTable(settings.gateway_routes),
        upstreams=upstreams,
        limits=limits,
        upstream_seconds=Histogram(
            "smartgym_gateway_upstream_seconds",
            "Time to the upstream's response headers, by route and status.",
            ["route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=kernel.metrics.registry,
        ),
        sockets=SocketSlots(
            per_address=settings.gateway_ws_per_address,
            per_principal=settings.gateway_ws_per_principal,
            per_share_link=settings.gateway_ws_per_share_link,
        ),
        stream_idle_s=settings.gateway_stream_idle_s,
    )
    app.state.screens = load_screens(settings) if settings.gateway_web_enabled else None
    return app
