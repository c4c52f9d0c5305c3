"""auth's HTTP routes (thin: parse, call the service, shape the answer)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status

from auth.keys import KeyRing
from auth.schemas import LoginIn, SignupIn, TokenOut, UserPublic
from auth.service import AccountService, EmailTaken, InvalidCredentials
from common.api import CurrentPrincipal, from_app_state

Accounts = Annotated[AccountService, Depends(from_app_state("accounts", AccountService))]
Keys = Annotated[KeyRing, Depends(from_app_state("keys", KeyRing))]

router = APIRouter()


@router.post("/signup", status_code=status.HTTP_201_CREATED)
async def signup(body: SignupIn, accounts: Accounts) -> UserPublic:
    try:
        user = await accounts.register(email=body.email, password=body.password)
    except EmailTaken as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, "an account with this email exists") from exc
    return UserPublic(id=user.id, email=user.email, roles=user.roles)


@router.post("/login")
async def login(body: LoginIn, accounts: Accounts) -> TokenOut:
    try:
        issued = await accounts.authenticate(email=body.email, password=body.password)
    except InvalidCredentials as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "email or password is wrong") from exc
    return TokenOut(access_token=issued.access_token, expires_in=issued.expires_in)


@router.get("/me")
async def me(principal: CurrentPrincipal, accounts: Accounts) -> UserPublic:
    user = await accounts.get(uuid.UUID(principal.subject))
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "account no longer exists")
    return UserPublic(id=user.id, email=user.email, roles=user.roles)


@router.get("/.well-known/jwks.json")
async def jwks(keys: Keys) -> dict[str, Any]:
    return keys.jwks()
