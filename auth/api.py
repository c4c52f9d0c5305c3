"""auth's HTTP routes (thin: parse, call the service, shape the answer)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status

from auth.keys import KeyRing
from auth.schemas import (
    AuditEntryPublic,
    KeyRotated,
    LoginIn,
    PasswordChangeIn,
    RefreshIn,
    RolesIn,
    SignupIn,
    TokenOut,
    UserPublic,
)
from auth.service import (
    AccountService,
    EmailTaken,
    InvalidCredentials,
    InvalidRefreshToken,
    IssuedTokens,
    LoginLocked,
    UnknownUser,
    WeakPassword,
)
from common.api import CurrentPrincipal, from_app_state, require_roles
from common.security import Principal, Role

Accounts = Annotated[AccountService, Depends(from_app_state("accounts", AccountService))]
Keys = Annotated[KeyRing, Depends(from_app_state("keys", KeyRing))]
Operator = Annotated[Principal, Depends(require_roles(Role.OPERATOR))]

router = APIRouter()


def source_address(request: Request) -> str | None:
    """The caller's address: the gateway appends it to X-Forwarded-For, so the last hop
    is the one our own gateway saw (auth is only reachable through it)."""
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded:
        return forwarded.rsplit(",", 1)[-1].strip()[:64] or None
    return request.client.host if request.client else None


def _tokens(issued: IssuedTokens) -> TokenOut:
    return TokenOut(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        refresh_token=issued.refresh_token,
        refresh_expires_in=issued.refresh_expires_in,
    )


def _user(user: Any) -> UserPublic:
    return UserPublic(id=user.id, email=user.email, roles=user.roles, branches=user.branches or [])


@router.post("/signup", status_code=status.HTTP_201_CREATED)
async def signup(body: SignupIn, accounts: Accounts, request: Request) -> UserPublic:
    try:
        user = await accounts.register(email=body.email, password=body.password, source=source_address(request))
    except WeakPassword as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [f"password {p}" for p in exc.problems]) from exc
    except EmailTaken as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, "an account with this email exists") from exc
    return _user(user)


@router.post("/login")
async def login(body: LoginIn, accounts: Accounts, request: Request) -> TokenOut:
    try:
        issued = await accounts.login(email=body.email, password=body.password, source=source_address(request))
    except InvalidCredentials as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "email or password is wrong") from exc
    except LoginLocked as exc:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed attempts; try again later",
            headers={"Retry-After": str(exc.retry_after_s)},
        ) from exc
    return _tokens(issued)


@router.post("/token/refresh")
async def refresh(body: RefreshIn, accounts: Accounts, request: Request) -> TokenOut:
    try:
        return _tokens(await accounts.refresh(refresh_token=body.refresh_token, source=source_address(request)))
    except InvalidRefreshToken as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "refresh token invalid, expired or revoked") from exc


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshIn, accounts: Accounts, request: Request) -> Response:
    await accounts.logout(refresh_token=body.refresh_token, source=source_address(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me")
async def me(principal: CurrentPrincipal, accounts: Accounts) -> UserPublic:
    user = await accounts.get(_user_id(principal))
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "account no longer exists")
    return _user(user)


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(
    body: PasswordChangeIn, principal: CurrentPrincipal, accounts: Accounts, request: Request
) -> Response:
    try:
        await accounts.change_password(
            user_id=_user_id(principal),
            current=body.current_password,
            new=body.new_password,
            source=source_address(request),
        )
    except InvalidCredentials as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "current password is wrong") from exc
    except WeakPassword as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [f"password {p}" for p in exc.problems]) from exc
    except UnknownUser as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "account no longer exists") from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/users/{user_id}/roles")
async def assign_roles(
    user_id: uuid.UUID, body: RolesIn, operator: Operator, accounts: Accounts, request: Request
) -> UserPublic:
    try:
        user = await accounts.assign_roles(
            actor=operator.subject,
            user_id=user_id,
            roles=body.roles,
            branches=body.branches,
            source=source_address(request),
        )
    except UnknownUser as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such account") from exc
    return _user(user)


@router.post("/admin/keys/rotate")
async def rotate_key(operator: Operator, accounts: Accounts, request: Request) -> KeyRotated:
    return KeyRotated(kid=await accounts.rotate_signing_key(actor=operator.subject, source=source_address(request)))


@router.get("/admin/audit")
async def audit_trail(
    _operator: Operator,
    accounts: Accounts,
    subject: Annotated[str | None, Query(max_length=254)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AuditEntryPublic]:
    entries = await accounts.audit_trail(subject=subject, action=action, limit=limit)
    return [AuditEntryPublic.model_validate(entry, from_attributes=True) for entry in entries]


@router.get("/.well-known/jwks.json")
async def jwks(keys: Keys) -> dict[str, Any]:
    return keys.jwks()


def _user_id(principal: Principal) -> uuid.UUID:
    try:
        return uuid.UUID(principal.subject)
    except ValueError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "not a member account") from exc
