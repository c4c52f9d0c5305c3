"""FastAPI glue shared by every service: the app factory, health endpoints, and the
principal/role/branch dependencies."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import sqlalchemy.exc
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common.context import current_correlation_id
from common.kernel import ServiceKernel
from common.observability import KernelMiddleware
from common.security import InvalidToken, Principal, Role

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]
T = TypeVar("T")


def create_service_app(
    kernel: ServiceKernel,
    *,
    title: str,
    routers: Iterable[APIRouter] = (),
    on_start: Iterable[Hook] = (),
    on_stop: Iterable[Hook] = (),
) -> FastAPI:
    """A service's FastAPI app: kernel lifespan, middleware, health, metrics, error bodies."""
    start_hooks, stop_hooks = list(on_start), list(on_stop)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await kernel.start()
        for hook in start_hooks:
            await hook()
        try:
            yield
        finally:
            for hook in reversed(stop_hooks):
                await hook()
            await kernel.stop()

    app = FastAPI(title=title, lifespan=lifespan)
    app.state.kernel = kernel
    app.add_middleware(
        KernelMiddleware,
        service=kernel.name,
        metrics=kernel.metrics,
        max_body_bytes=kernel.settings.max_body_bytes,
    )
    app.include_router(health_router(kernel))
    for router in routers:
        app.include_router(router)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for unavailable in DATABASE_UNAVAILABLE:
        app.add_exception_handler(unavailable, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected_error)
    _document_error_bodies(app)
    return app


def _document_error_bodies(app: FastAPI) -> None:
    """Say in the OpenAPI document what a 4xx body really is: ``detail`` holds either the
    field errors of a malformed request or one reason in words (a domain refusal), so a
    client generated from the document can read both."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        schemas = document.get("components", {}).get("schemas", {})
        validation = schemas.get("HTTPValidationError", {}).get("properties", {})
        if "detail" in validation:
            field_errors = {key: value for key, value in validation["detail"].items() if key != "title"}
            validation["detail"] = {
                "title": "Detail",
                "description": "the field errors, or one reason in words",
                "anyOf": [field_errors, {"type": "string"}],
            }
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def health_router(kernel: ServiceKernel) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": kernel.name}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        ready, checks = await kernel.readiness()
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        return Response(generate_latest(kernel.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}
        for error in exc.errors()
    ]
    return JSONResponse({"detail": errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


# The database cannot be reached, or no connection is free in time: the request did not
# happen (its transaction never committed), so the caller may simply try again.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    sqlalchemy.exc.DisconnectionError,
)
DATABASE_RETRY_AFTER_S = 5


async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    # The driver's own message only: SQLAlchemy's text of the error carries the statement's
    # parameters (password hashes, reset codes), which never belong in a log.
    cause = getattr(exc, "orig", None) or exc
    reason = (str(cause).splitlines() or [""])[0][:300]
    log.warning("database unavailable: %s: %s", type(cause).__name__, reason)
    return JSONResponse(
        {"detail": "the service's database is unavailable, try again shortly", "request_id": current_correlation_id()},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"retry-after": str(DATABASE_RETRY_AFTER_S)},
    )


async def _unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return JSONResponse(
        {"detail": "internal error", "request_id": current_correlation_id()},
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


# -- dependencies ----------------------------------------------------------------------


# Dependencies are ``async def`` on purpose: FastAPI runs plain ``def`` dependencies in a
# worker thread, which costs ~100 µs per request each.
async def get_kernel(request: Request) -> ServiceKernel:
    kernel: ServiceKernel = request.app.state.kernel
    return kernel


KernelDep = Annotated[ServiceKernel, Depends(get_kernel)]


def from_app_state(attribute: str, kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """A dependency returning what the app factory stored as ``app.state.<attribute>``."""

    async def dependency(request: Request) -> T:
        value = getattr(request.app.state, attribute)
        if not isinstance(value, kind):
            raise RuntimeError(f"app.state.{attribute} is not a {kind.__name__}")
        return value

    return dependency


_bearer = HTTPBearer(auto_error=False)


async def current_principal(
    kernel: KernelDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "bearer token required", headers={"WWW-Authenticate": "Bearer"}
        )
    try:
        return await kernel.verifier.verify(credentials.credentials)
    except InvalidToken as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            exc.reason,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from exc


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def current_user_id(principal: CurrentPrincipal) -> uuid.UUID:
    """Dependency: the calling person's account id; 403 for devices."""
    if principal.user_id is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs a person's account, not a device")
    return principal.user_id


CurrentUserId = Annotated[uuid.UUID, Depends(current_user_id)]


def require_roles(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """Dependency: the principal, if it holds one of ``roles``; 403 otherwise."""
    wanted = frozenset(roles)

    async def dependency(principal: CurrentPrincipal) -> Principal:
        if not principal.has_any_role(wanted):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "role not permitted")
        return principal

    return dependency


async def require_branch_access(branch_id: str, principal: CurrentPrincipal) -> Principal:
    """Dependency for routes with a ``{branch_id}``: the caller must act for that branch."""
    if not principal.may_act_for_branch(branch_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "not permitted for this branch")
    return principal


BranchPrincipal = Annotated[Principal, Depends(require_branch_access)]
