"""The gateway's settings: the route table is configuration, not code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Self

from limits import parse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.security import Role
from common.settings import PlatformSettings


class RouteConfig(BaseModel):
    """One path prefix and the upstream service behind it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = Field(
        pattern=r"^/[a-z0-9/_-]*[a-z0-9]$",
        description="Path prefix routed to the service (the rest of the path is forwarded).",
    )
    service: str = Field(description="Upstream service name (breaker, metrics, logs).")
    # One or more instances; a Kubernetes headless Service name resolving to several
    # pod addresses works too (the connector resolves and spreads across them).
    upstreams: tuple[str, ...] = Field(
        min_length=1,
        description="One or more instance URLs; a headless Service name resolving to several addresses works too.",
    )
    # Paths below the prefix that need no token (login, signup, JWKS): exact matches.
    public: tuple[str, ...] = Field(
        default=(), description="Paths below the prefix that need no token (exact matches)."
    )
    # Empty: any authenticated principal.
    roles: tuple[Role, ...] = Field(default=(), description="Roles allowed; empty: any authenticated principal.")
    methods: tuple[Literal["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"], ...] = Field(
        default=(
            "GET",
            "HEAD",
            "OPTIONS",
            "POST",
            "PUT",
            "PATCH",
            "DELETE",
        ),
        description="HTTP methods routed.",
    )
    timeout_s: float = Field(default=5.0, gt=0, le=120, description="Upstream timeout, seconds.")
    # Extra attempts on another instance, only for idempotent methods and only when the
    # connection could not be made (the upstream never saw the request).
    retries: int = Field(
        default=1,
        ge=0,
        le=3,
        description=(
            "Extra attempts on another instance, only for idempotent methods and only when no connection was made."
        ),
    )
    # Per principal (or per client address on public paths), in `limits` notation.
    rate_limit: str = Field(
        default="50/second", description="Per principal (or client address on public paths), in `limits` notation."
    )
    max_body_bytes: int = Field(default=1_048_576, ge=0, description="Largest request body on this route.")
    # Stream request bodies to the upstream as they arrive (large uploads) instead of
    # buffering them; such requests are never retried (a stream cannot be replayed).
    stream_body: bool = Field(
        default=False, description="Stream request bodies upstream as they arrive (never retried)."
    )
    # Branch-scoped routes: a regular expression over the upstream path whose ``branch``
    # group names the branch; the caller must act for it (operators act for all).
    branch_pattern: str | None = Field(
        default=None,
        description=(
            "Regular expression over the upstream path whose `branch` group names the branch the caller must act for."
        ),
    )

    @field_validator("upstreams", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @field_validator("branch_pattern")
    @classmethod
    def _has_branch_group(cls, value: str | None) -> str | None:
        if value is not None and "branch" not in re.compile(value).groupindex:
            raise ValueError("branch_pattern needs a (?P<branch>...) group")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _parsable(cls, value: str) -> str:
        parse(value)  # raises ValueError on nonsense
        return value


class GatewaySettings(PlatformSettings):
    notification_url: str = Field(default="http://127.0.0.1:8008", description="notification's base URL.")
    access_url: str = Field(default="http://127.0.0.1:8002", description="access's base URL.")
    monitoring_url: str = Field(default="http://127.0.0.1:8007", description="monitoring's base URL.")
    running_url: str = Field(default="http://127.0.0.1:8010", description="running's base URL.")
    running_live_url: str = Field(default="http://127.0.0.1:8020", description="running's live-socket server base URL.")
    helper_url: str = Field(default="http://127.0.0.1:8004", description="helper's base URL.")
    branch_owner_url: str = Field(default="http://127.0.0.1:8005", description="branch_owner's base URL.")
    search_url: str = Field(default="http://127.0.0.1:8006", description="search's base URL.")
    mlops_url: str = Field(default="http://127.0.0.1:8009", description="mlops' base URL.")
    gateway_routes: tuple[RouteConfig, ...] = Field(
        default=(),
        description=(
            "The route table as JSON (see RouteConfig below); empty: the built-in table over the *_URL settings."
        ),
    )
    # memory:// (one gateway) or redis://host:6379 (limits shared by replicas, ADR 0057).
    gateway_rate_limit_storage: str = Field(
        default="memory://",
        description=(
            "memory:// (one gateway) or redis://[:password@]host:6379[/db] (rediss:// with TLS): limits shared "
            "by every replica."
        ),
    )
    # Shared limits: how often a replica sends its hits to Redis and reads the others'.
    gateway_rate_limit_sync_s: float = Field(
        default=0.1,
        gt=0,
        le=5,
        description=(
            "Shared limits: seconds between a replica's exchanges with Redis, which record its hits and read "
            "every replica's (ADR 0057)."
        ),
    )
    # Every client address, whatever the route: a floor against floods.
    gateway_ip_rate_limit: str = Field(
        default="200/second",
        description="Per client address, whatever the route: a floor against floods (`limits` notation).",
    )
    # An instance that refused a connection is left out for this long.
    gateway_eject_s: float = Field(
        default=10.0, gt=0, description="Seconds an instance that refused a connection is left out."
    )
    gateway_pool_per_host: int = Field(
        default=128,
        ge=1,
        le=10_000,
        description="Pooled keep-alive HTTP connections per upstream instance (WebSockets never take from it).",
    )
    gateway_ws_per_address: int = Field(
        default=20, ge=1, le=100_000, description="Open WebSockets at once per client address."
    )
    gateway_ws_per_principal: int = Field(
        default=5, ge=1, le=100_000, description="Open WebSockets at once per principal (token subject)."
    )
    gateway_ws_per_share_link: int = Field(
        default=50, ge=1, le=100_000, description="Open WebSockets at once per shared-run link."
    )
    # Origins of the web consoles (owner console, operations dashboard) allowed by CORS.
    gateway_cors_origins: tuple[str, ...] = Field(
        default=(), description="Origins of the web consoles allowed by CORS."
    )

    # The screens (kiosk, console, ops) are served from the built assets of the `web`
    # package unless a directory is named here (a development build elsewhere).
    gateway_web_dir: Path | None = Field(
        default=None,
        description=(
            "Directory of the built web screens (manifest.json inside); empty: those shipped in the `web` package."
        ),
    )
    gateway_web_enabled: bool = Field(
        default=True, description="Serve the web screens (/kiosk, /console, /ops) and their assets under /static."
    )
    gateway_map_tile_url: str = Field(
        default="",
        max_length=500,
        description=(
            "Map tile URL template for the screens' maps (https://host/{z}/{x}/{y}.png); empty: overlays without tiles."
        ),
    )
    # A stream (Server-Sent Events) may stay quiet far longer than any request takes: its
    # reads are bounded by this, not by the route's timeout.
    gateway_stream_idle_s: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="Longest silence on a streamed response (text/event-stream) before the gateway closes it, seconds.",
    )

    @field_validator("gateway_map_tile_url")
    @classmethod
    def _tile_template(cls, value: str) -> str:
        if value and (not re.match(r"^https?://[^/\s]+/", value) or not all(f"{{{k}}}" in value for k in "zxy")):
            raise ValueError("a tile URL is http(s)://host/... with {z}, {x} and {y}")
        return value

    @field_validator("gateway_rate_limit_storage")
    @classmethod
    def _known_storage(cls, value: str) -> str:
        # "async+" is how the `limits` library spelled these; it means the same here.
        if not re.match(r"^(memory://$|rediss?://[^/\s]+)", value.removeprefix("async+")):
            raise ValueError("rate-limit storage is memory:// or redis://host:port[/db] (rediss:// with TLS)")
        return value

    @model_validator(mode="after")
    def _no_wildcard_cors_in_production(self) -> Self:
        # "*" would let any web page call the API with a member's token in hand.
        if self.environment == "production" and any("*" in origin for origin in self.gateway_cors_origins):
            raise ValueError("unsafe production settings: SMARTGYM_GATEWAY_CORS_ORIGINS must list origins, not '*'")
        return self

    @model_validator(mode="after")
    def _default_routes(self) -> Self:
        if not self.gateway_routes:
            routes = (
                RouteConfig(
                    prefix="/api/auth",
                    service="auth",
                    upstreams=(self.auth_url,),
                    public=(
                        "/signup",
                        "/login",
                        "/token/refresh",
                        "/logout",
                        "/password/reset-request",
                        "/password/reset",
                        "/devices/token",
                        "/.well-known/jwks.json",
                    ),
                    rate_limit="20/second",
                    max_body_bytes=6 * 1024 * 1024,  # enrolment photos
                    timeout_s=15.0,
                ),
                RouteConfig(prefix="/api/notifications", service="notification", upstreams=(self.notification_url,)),
                RouteConfig(prefix="/api/monitoring", service="monitoring", upstreams=(self.monitoring_url,)),
                RouteConfig(
                    prefix="/api/running",
                    service="running",
                    upstreams=(self.running_url,),
                    public=("/v1/shared/",),  # a share link's token is the credential
                    # Run files (GPX/TCX/FIT) up to a marathon at a point a second. The
                    # table strips a route's prefix, so the import cannot have a route of
                    # its own; running itself holds every other route to 1 MiB (the
                    # archive of a whole history shares the file routes' 32 MiB).
                    max_body_bytes=32 * 1024 * 1024,
                    timeout_s=60.0,
                ),
                # Members type as they search (suggestions): a higher rate than the default.
                RouteConfig(
                    prefix="/api/search",
                    service="search",
                    upstreams=(self.search_url,),
                    rate_limit="30/second",
                    max_body_bytes=16 * 1024,
                    timeout_s=3.0,
                ),
                # Live runs: WebSockets served by running's own socket server.
                RouteConfig(
                    prefix="/api/live",
                    service="running_live",
                    upstreams=(self.running_live_url,),
                    public=("/ws/share/",),  # the link's token is the credential
                ),
                RouteConfig(
                    prefix="/api/helper",
                    service="helper",
                    upstreams=(self.helper_url,),
                    # Helpers' tasks, and the task photos their branches' staff review.
                    roles=(Role.HELPER, Role.BRANCH_OWNER, Role.OPERATOR),
                    max_body_bytes=21 * 1024 * 1024,  # up to five photos of 4 MiB
                    timeout_s=30.0,
                    # A retried upload is safe (client keys) but slow: the app retries, not us.
                    retries=0,
                ),
                # The model registry and deployments: the operations dashboard only.
                RouteConfig(
                    prefix="/api/mlops",
                    service="mlops",
                    upstreams=(self.mlops_url,),
                    roles=(Role.OPERATOR,),
                    max_body_bytes=64 * 1024,
                ),
                # Members read profiles and write reviews there too: every role, checked per route.
                RouteConfig(
                    prefix="/api/branch-owner",
                    service="branch_owner",
                    upstreams=(self.branch_owner_url,),
                    max_body_bytes=4 * 1024 * 1024,  # branch photos (the console shrinks them first)
                ),
                RouteConfig(
                    prefix="/api/access",
                    service="access",
                    upstreams=(self.access_url,),
                    max_body_bytes=6 * 1024 * 1024,  # camera frames
                    timeout_s=10.0,
                    # Kiosks at a busy door send a frame every few hundred milliseconds.
                    rate_limit="20/second",
                    # The gate decides: a retried POST could open it twice.
                    retries=0,
                ),
            )
            object.__setattr__(self, "gateway_routes", routes)
        # The kernel's body limit guards the whole app; routes set their own, so the
        # outer one must let the largest of them through.
        largest = max(route.max_body_bytes for route in self.gateway_routes)
        object.__setattr__(self, "max_body_bytes", max(self.max_body_bytes, largest))
        return self
