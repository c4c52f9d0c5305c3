"""The gateway's routes: a catch-all that authenticates, authorises and forwards."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse

from common.api import KernelDep, from_app_state, require_roles
from common.breaker import CircuitOpenError
from common.security import InvalidToken, Role
from gateway.proxy import HOP_BY_HOP, RouteTable, Upstreams

Table = Annotated[RouteTable, Depends(from_app_state("route_table", RouteTable))]
UpstreamsDep = Annotated[Upstreams, Depends(from_app_state("upstreams", Upstreams))]

router = APIRouter()


@router.get("/admin/breakers", dependencies=[Depends(require_roles(Role.OPERATOR))])
async def breakers(upstreams: UpstreamsDep) -> list[dict[str, object]]:
    """Breaker state per upstream, for the operations dashboard."""
    return [breaker.snapshot() for breaker in upstreams.breakers()]


@router.api_route("/api/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def forward(request: Request, table: Table, upstreams: UpstreamsDep, kernel: KernelDep) -> Response:
    match = table.match(request.url.path)
    if match is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no route for this path")
    if not match.is_public:
        authorization = request.headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "bearer token required", headers={"WWW-Authenticate": "Bearer"}
            )
        try:
            principal = await kernel.verifier.verify(token)
        except InvalidToken as exc:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, exc.reason, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            ) from exc
        if match.route.roles and not principal.has_any_role(match.route.roles):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "role not permitted")
    body = await request.body()
    try:
        upstream = await upstreams.forward(
            match,
            method=request.method,
            query=request.url.query,
            headers=request.headers,
            body=body,
            client_address=request.client.host if request.client else None,
        )
    except CircuitOpenError as exc:
        return JSONResponse(
            {"detail": f"{match.route.service} is unavailable (circuit open)"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(max(1, round(exc.retry_after_s)))},
        )
    except httpx.TimeoutException:
        return JSONResponse({"detail": f"{match.route.service} timed out"}, status_code=status.HTTP_504_GATEWAY_TIMEOUT)
    except httpx.TransportError:
        return JSONResponse(
            {"detail": f"{match.route.service} is unreachable"}, status_code=status.HTTP_502_BAD_GATEWAY
        )
    headers = {name: value for name, value in upstream.headers.items() if name.lower() not in HOP_BY_HOP}
    headers.pop("content-encoding", None)  # httpx already decoded the body
    return Response(upstream.content, status_code=upstream.status_code, headers=headers)
