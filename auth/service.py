"""Accounts: registration and authentication (no web framework here)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from auth.keys import KeyRing
from auth.models import User
from common.events.catalog import UserRegistered
from common.events.envelope import utc_now
from common.kernel import ServiceKernel
from common.security import Role, TokenIssuer


class EmailTaken(Exception):
    pass


class InvalidCredentials(Exception):
    pass


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int


class AccountService:
    def __init__(self, *, kernel: ServiceKernel, keys: KeyRing, hasher: PasswordHasher) -> None:
        self._kernel = kernel
        self._keys = keys
        self._hasher = hasher
        # Verifying against this when the account does not exist keeps the response time
        # of "no such user" equal to "wrong password": no enumeration by timing.
        self._dummy_hash = hasher.hash(uuid.uuid4().hex)

    async def register(self, *, email: str, password: str) -> User:
        normalized = email.lower()
        password_hash = await asyncio.to_thread(self._hasher.hash, password)
        user = User(
            id=uuid.uuid4(),
            email=normalized,
            password_hash=password_hash,
            roles=[Role.CUSTOMER.value],
            created_at=utc_now(),
        )
        try:
            async with self._kernel.unit_of_work() as uow:
                uow.session.add(user)
                await uow.session.flush()
                uow.emit(UserRegistered(user_id=user.id, email=user.email, roles=tuple(user.roles)))
        except IntegrityError as exc:
            raise EmailTaken(normalized) from exc
        return user

    async def authenticate(self, *, email: str, password: str) -> IssuedToken:
        async with self._kernel.db.sessions() as session:
            user = await session.scalar(select(User).where(func.lower(User.email) == email.lower()))
        stored_hash = user.password_hash if user else self._dummy_hash
        try:
            await asyncio.to_thread(self._hasher.verify, stored_hash, password)
        except (VerificationError, InvalidHashError) as exc:
            raise InvalidCredentials from exc
        if user is None:
            raise InvalidCredentials
        issuer = self._issuer()
        token = issuer.issue(str(user.id), [Role(role) for role in user.roles])
        return IssuedToken(token, int(issuer.ttl.total_seconds()))

    async def get(self, user_id: uuid.UUID) -> User | None:
        async with self._kernel.db.sessions() as session:
            return await session.get(User, user_id)

    def _issuer(self) -> TokenIssuer:
        settings = self._kernel.settings
        return TokenIssuer(
            self._keys.active,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl=timedelta(seconds=settings.jwt_access_ttl_s),
        )
