"""Service-to-service HTTP: pooled httpx client, explicit timeouts, a circuit breaker,
and the correlation id carried along."""

from __future__ import annotations

from typing import Any

import httpx

from common.breaker import AsyncCircuitBreaker
from common.context import REQUEST_ID_HEADER, current_correlation_id


class UpstreamUnavailable(Exception):
    """The upstream could not be reached or failed; ``reason`` is safe to show."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"{service}: {reason}")
        self.service = service
        self.reason = reason


def error_detail(response: httpx.Response) -> str:
    """The ``detail`` of a FastAPI error answer, or a generic line if there is none."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else f"refused ({response.status_code})"


class ServiceClient:
    """Calls one upstream service. 5xx answers and transport errors count against its
    breaker; 4xx answers are the caller's business and do not."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        breaker: AsyncCircuitBreaker,
        timeout_s: float = 5.0,
        max_connections: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.breaker = breaker
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 2.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        correlation_id = current_correlation_id()
        if correlation_id:
            headers.setdefault(REQUEST_ID_HEADER, correlation_id)

        async def attempt() -> httpx.Response:
            return await self._client.request(method, url, headers=headers, **kwargs)

        return await self.breaker.call(attempt, is_failure=lambda response: response.status_code >= 500)

    async def aclose(self) -> None:
        await self._client.aclose()
