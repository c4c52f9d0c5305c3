"""The gateway's routes: a catch-all that authenticates, authorises and forwards."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from aiohttp import ClientResponse, ClientWebSocketResponse, WSMsgType
from fastapi import APIRouter, Depends, HTTPException, Request, Response, WebSocket, status
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from prometheus_client import Histogram
from starlette.background import BackgroundTask

from common.api import from_app_state, require_roles
from common.breaker import CircuitOpenError
from common.kernel import ServiceKernel
from common.security import InvalidToken, Principal, Role
from gateway.proxy import HOP_BY_HOP, RouteTable, Upstreams, UpstreamTimeout, UpstreamUnreachable
from gateway.ratelimit import RateLimits
from gateway.screens import IMMUTABLE, TITLES, Screens, media_type
from gateway.sockets import SocketSlots

UpstreamsDep = Annotated[Upstreams, Depends(from_app_state("upstreams", Upstreams))]
SMALL_BODY = 64 * 1024


@dataclass(frozen=True)
class GatewayState:
    kernel: ServiceKernel
    table: RouteTable
    upstreams: Upstreams
    limits: RateLimits
    upstream_seconds: Histogram
    sockets: SocketSlots
    stream_idle_s: float = 300.0


router = APIRouter()
# The web screens: public shells and assets (every call they make carries a token).
screens = APIRouter(include_in_schema=False)


def _screens(request: Request) -> Screens:
    built: Screens | None = request.app.state.screens
    if built is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the web screens are not served here")
    return built


async def screen_shell(request: Request) -> Response:
    """The HTML page of the screen the path names (/kiosk, /console, /ops, /app)."""
    built = _screens(request)
    screen = request.url.path.strip("/")
    page = built.shell(screen)
    if page is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {screen} screen in this build")
    return HTMLResponse(page, headers=built.headers(screen))


for _screen in TITLES:
    screens.add_api_route(f"/{_screen}", screen_shell, methods=["GET"])


# The member app's installable parts keep fixed URLs under /app: the browser fetches the
# worker and the web-app manifest by name, and a worker's scope is where it is served from.
APP_FILES = {"sw.js": "app/sw.js", "manifest.webmanifest": "app/manifest.webmanifest", "icon.svg": "app/icon.svg"}


@screens.get("/app/{name}")
async def app_file(name: str, request: Request) -> Response:
    built = _screens(request)
    found = built.asset(APP_FILES[name]) if name in APP_FILES else None
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
    headers = {"cache-control": "no-cache", "x-content-type-options": "nosniff"}
    if name == "sw.js":
        headers["service-worker-allowed"] = "/app"
    return FileResponse(found, media_type=media_type(found), headers=headers)


@screens.get("/static/{path:path}")
async def static_asset(path: str, request: Request) -> Response:
    built = _screens(request)
    found = built.asset(path)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
    return FileResponse(
        found,
        media_type=media_type(found),
        headers={
            "cache-control": IMMUTABLE if path.startswith("assets/") else "no-cache",
            "x-content-type-options": "nosniff",
        },
    )


@router.get("/admin/breakers", dependencies=[Depends(require_roles(Role.OPERATOR))])
async def breakers(upstreams: UpstreamsDep) -> list[dict[str, object]]:
    """Breaker and instance state per upstream, for the operations dashboard."""
    return upstreams.breakers()


@router.api_route("/api/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
async def forward(request: Request) -> Response:
    # The hottest path of the platform: everything comes from one app-state object
    # instead of five FastAPI dependencies (~190 µs of dependency solving per request).
    gateway: GatewayState = request.app.state.gateway
    match = gateway.table.match(request.url.path)
    if match is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no route for this path")
    if request.method not in match.route.methods:
        raise HTTPException(
            status.HTTP_405_METHOD_NOT_ALLOWED,
            f"{request.method} is not allowed here",
            headers={"Allow": ", ".join(match.route.methods)},
        )
    principal = None if match.is_public else await _authenticate(request, gateway.kernel)
    if principal is not None and match.route.roles and not principal.has_any_role(match.route.roles):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "role not permitted")
    branch = match.branch
    if principal is not None and branch is not None and not principal.may_act_for_branch(branch):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "not permitted for this branch")
    address = request.client.host if request.client else None
    verdict = await gateway.limits.check(
        route=match.route.service,
        limit=match.route.rate_limit,
        principal=principal.subject if principal else None,
        address=address,
    )
    if not verdict.allowed:
        gateway.kernel.metrics.rate_limited.labels(match.route.service).inc()
        return JSONResponse(
            {"detail": "too many requests"},
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(verdict.retry_after_s)},
        )
    body: bytes | AsyncIterator[bytes] = (
        _streamed_body(request, match.route.max_body_bytes)
        if match.route.stream_body
        else await _bounded_body(request, match.route.max_body_bytes)
    )
    started = time.perf_counter()
    try:
        upstream = await gateway.upstreams.forward(
            match,
            method=request.method,
            query=request.url.query,
            headers=request.headers,
            body=body,
            client_address=address,
        )
    except CircuitOpenError as exc:
        return JSONResponse(
            {"detail": f"{match.route.service} is unavailable (circuit open)"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(max(1, round(exc.retry_after_s)))},
        )
    except UpstreamTimeout:
        return JSONResponse({"detail": f"{match.route.service} timed out"}, status_code=status.HTTP_504_GATEWAY_TIMEOUT)
    except UpstreamUnreachable:
        return JSONResponse(
            {"detail": f"{match.route.service} is unreachable"}, status_code=status.HTTP_502_BAD_GATEWAY
        )
    gateway.upstream_seconds.labels(match.route.service, str(upstream.status)).observe(time.perf_counter() - started)
    headers = {name: value for name, value in upstream.headers.items() if name.lower() not in HOP_BY_HOP}
    if upstream.content_length is not None and upstream.content_length <= SMALL_BODY:
        # Most answers are small JSON: read them whole and skip the streaming machinery
        # (a task group per response that listens for the client leaving).
        try:
            content = await asyncio.wait_for(upstream.read(), match.route.timeout_s)
        except TimeoutError:
            return JSONResponse(
                {"detail": f"{match.route.service} timed out"}, status_code=status.HTTP_504_GATEWAY_TIMEOUT
            )
        finally:
            upstream.release()
        return Response(content, status_code=upstream.status, headers=headers)
    # An event stream is quiet between events (keep-alives every few seconds at best); any
    # other body that stalls for the route's timeout is cut.
    is_stream = upstream.content_type == "text/event-stream"
    return StreamingResponse(
        _relay(upstream, gateway.stream_idle_s if is_stream else match.route.timeout_s),
        status_code=upstream.status,
        headers=headers,
        background=BackgroundTask(_release, upstream),
    )


async def _relay(upstream: ClientResponse, idle_s: float) -> AsyncIterator[bytes]:
    """The upstream's body as it comes; a silence longer than ``idle_s`` ends it (the
    client sees the stream close, and an event-stream client reconnects)."""
    while True:
        try:
            chunk = await asyncio.wait_for(upstream.content.readany(), idle_s)
        except TimeoutError:
            return
        if not chunk:
            return
        yield chunk


async def _release(upstream: ClientResponse) -> None:
    # async on purpose: Starlette runs a sync background task in a worker thread.
    upstream.release()


@router.websocket("/api/{path:path}")
async def forward_websocket(websocket: WebSocket) -> None:
    """Live sockets (running's runs and races) pass through: the token is checked on the
    handshake (header, or ``access_token`` in the query for browsers), then frames are
    pumped both ways until either side closes. A refused handshake is an HTTP answer
    with the reason (401 for a missing or bad token), not a bare close."""
    gateway: GatewayState = websocket.app.state.gateway
    match = gateway.table.match(websocket.url.path)
    if match is None:
        await _deny(websocket, status.HTTP_404_NOT_FOUND, "no route for this path")
        return
    token = websocket.headers.get("authorization", "").partition(" ")[2] or websocket.query_params.get(
        "access_token", ""
    )
    principal: Principal | None = None
    if not match.is_public:
        if not token:
            await _deny(websocket, status.HTTP_401_UNAUTHORIZED, "bearer token required", bearer_error=None)
            return
        try:
            principal = await gateway.kernel.verifier.verify(token)
        except InvalidToken as exc:
            await _deny(websocket, status.HTTP_401_UNAUTHORIZED, exc.reason, bearer_error="invalid_token")
            return
        if match.route.roles and not principal.has_any_role(match.route.roles):
            await _deny(websocket, status.HTTP_403_FORBIDDEN, "role not permitted")
            return
    claim = gateway.sockets.claim(
        address=websocket.client.host if websocket.client else None,
        principal=principal.subject if principal else None,
        # A public live path carries its own credential (a shared link's token).
        share_link=f"{match.route.service}:{match.upstream_path}" if match.is_public else None,
    )
    if isinstance(claim, str):
        await _deny(websocket, status.HTTP_429_TOO_MANY_REQUESTS, claim)
        return
    try:
        query = "&".join(f"{k}={v}" for k, v in websocket.query_params.multi_items() if k != "access_token")
        try:
            upstream = await gateway.upstreams.connect_websocket(match, query=query, token=token)
        except (UpstreamUnreachable, UpstreamTimeout, CircuitOpenError):
            await _deny(websocket, status.HTTP_503_SERVICE_UNAVAILABLE, f"{match.route.service} unavailable")
            return
        await websocket.accept()
        await _pump(websocket, upstream)
    finally:
        claim.release()


async def _deny(websocket: WebSocket, code: int, reason: str, *, bearer_error: str | None = None) -> None:
    """Refuse the handshake with an HTTP answer and a JSON reason (servers without the
    denial-response extension get a policy-violation close instead)."""
    headers: dict[str, str] = {}
    if code == status.HTTP_401_UNAUTHORIZED:
        headers["WWW-Authenticate"] = f'Bearer error="{bearer_error}"' if bearer_error else "Bearer"
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse({"detail": reason}, status_code=code, headers=headers))
    else:
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION, reason=reason)


async def _pump(client: WebSocket, upstream: ClientWebSocketResponse) -> None:
    async def client_to_upstream() -> None:
        while True:
            message = await client.receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(code=message.get("code", 1000), message=(message.get("reason") or "").encode())
                return
            if message.get("text") is not None:
                await upstream.send_str(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send_bytes(message["bytes"])

    async def upstream_to_client() -> None:
        reason = ""
        while True:
            frame = await upstream.receive()
            if frame.type == WSMsgType.TEXT:
                await client.send_text(frame.data)
            elif frame.type == WSMsgType.BINARY:
                await client.send_bytes(frame.data)
            else:
                if frame.type == WSMsgType.CLOSE:
                    reason = frame.extra or ""  # the upstream's close reason, passed on as sent
                break
        with contextlib.suppress(RuntimeError):  # the client may be gone already
            await client.close(code=upstream.close_code or 1000, reason=reason)

    tasks = [asyncio.create_task(client_to_upstream()), asyncio.create_task(upstream_to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await upstream.close()


async def _authenticate(request: Request, kernel: ServiceKernel) -> Principal:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "bearer token required", headers={"WWW-Authenticate": "Bearer"}
        )
    try:
        return await kernel.verifier.verify(token)
    except InvalidToken as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, exc.reason, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from exc


class BodyTooLarge(Exception):
    pass


async def _streamed_body(request: Request, limit: int) -> AsyncIterator[bytes]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"request body exceeds {limit} bytes for this route")
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge  # mid-stream: the upstream sees the connection cut
        yield chunk


async def _bounded_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"request body exceeds {limit} bytes for this route")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"request body exceeds {limit} bytes for this route")
        chunks.append(chunk)
    return b"".join(chunks)
