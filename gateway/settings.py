"""The gateway's settings: the route table is configuration, not code."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.security import Role
from common.settings import PlatformSettings


class RouteConfig(BaseModel):
    """One path prefix and the upstream service behind it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = Field(pattern=r"^/[a-z0-9/_-]*[a-z0-9]$")
    service: str
    upstream: str
    # Paths below the prefix that need no token (login, signup, JWKS): exact matches.
    public: tuple[str, ...] = ()
    # Empty: any authenticated principal.
    roles: tuple[Role, ...] = ()
    timeout_s: float = Field(default=5.0, gt=0, le=120)


class GatewaySettings(PlatformSettings):
    notification_url: str = "http://127.0.0.1:8008"
    gateway_routes: tuple[RouteConfig, ...] = ()

    @model_validator(mode="after")
    def _default_routes(self) -> Self:
        if not self.gateway_routes:
            routes = (
                RouteConfig(
                    prefix="/api/auth",
                    service="auth",
                    upstream=self.auth_url,
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
                ),
                RouteConfig(prefix="/api/notifications", service="notification", upstream=self.notification_url),
            )
            object.__setattr__(self, "gateway_routes", routes)
        return self
