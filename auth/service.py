"""Accounts, sessions and roles (no web framework here)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth.audit import audit
from auth.errors import (
    EmailTaken,
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidResetToken,
    LoginLocked,
    UnknownUser,
    WeakPassword,
)
from auth.faces import erase_face
from auth.keys import KeyRing
from auth.memberships import membership_changed
from auth.models import AuditEntry, FaceConsent, LoginThrottle, Membership, PasswordReset, RefreshToken, User
from auth.passwords import password_problems
from auth.revocations import in_force, revoke
from common.cpus import usable_cpus
from common.events.envelope import utc_now
from common.events.revocations import TokensRevoked
from common.kernel import ServiceKernel
from common.security import Role, TokenIssuer, secret_digest
from contracts import PasswordResetRequestedV2, UserDeleted, UserRegistered


@dataclass(frozen=True)
class AuthPolicy:
    access_ttl: timedelta = timedelta(minutes=15)
    refresh_ttl: timedelta = timedelta(days=30)
    max_failures: int = 5
    failure_window: timedelta = timedelta(minutes=15)
    lockout: timedelta = timedelta(minutes=15)
    reset_ttl: timedelta = timedelta(minutes=30)
    # Reset codes one account may be sent per window: more would let a stranger flood a
    # member's phone (and an SMS costs money). Beyond it, the request is quietly dropped.
    max_resets: int = 3
    reset_window: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class AccountService:
    def __init__(
        self, *, kernel: ServiceKernel, keys: KeyRing, hasher: PasswordHasher, policy: AuthPolicy, hash_threads: int = 0
    ) -> None:
        self._kernel = kernel
        self._keys = keys
        self._hasher = hasher
        self.policy = policy
        # Argon2 is CPU and memory hungry: hashes run on a thread per core and a flood of
        # logins queues for them. More threads would not hash faster, and each thread's
        # malloc arena keeps its last 19 MiB buffer: the process's memory would climb by
        # that much every time one more hash than ever before ran at once.
        # Made on first use and let go with the app, so an app started again gets a new one.
        self._hash_threads = hash_threads or usable_cpus()
        self._hashing: ThreadPoolExecutor | None = None
        # Verifying against this when the account does not exist keeps the response time
        # of "no such user" equal to "wrong password": no enumeration by timing.
        self._dummy_hash = hasher.hash(uuid.uuid4().hex)

    # -- accounts ------------------------------------------------------------------

    async def register(self, *, email: str | None, phone: str | None, password: str, source: str | None) -> User:
        normalized = email.lower() if email else None
        problems = password_problems(password, email=normalized)
        if problems:
            raise WeakPassword(problems)
        password_hash = await self._hash(password)
        user = User(
            id=uuid.uuid4(),
            email=normalized,
            phone=phone,
            password_hash=password_hash,
            roles=[Role.CUSTOMER.value],
            branches=[],
            created_at=utc_now(),
        )
        try:
            async with self._kernel.unit_of_work() as uow:
                uow.session.add(user)
                await uow.session.flush()
                audit(uow.session, "account_created", actor=str(user.id), subject=str(user.id), source=source)
                uow.emit(UserRegistered(user_id=user.id, email=user.email, phone=user.phone, roles=tuple(user.roles)))
        except IntegrityError as exc:
            raise EmailTaken(normalized or phone or "") from exc
        return user

    async def get(self, user_id: uuid.UUID) -> User | None:
        async with self._kernel.db.sessions() as session:
            return await session.get(User, user_id)

    async def by_email(self, email: str) -> User | None:
        async with self._kernel.db.sessions() as session:
            return await session.scalar(select(User).where(User.email == email.lower()))

    async def change_password(self, *, user_id: uuid.UUID, current: str, new: str, source: str | None) -> None:
        """Change the password and end every session of the account."""
        user = await self.get(user_id)
        if user is None:
            raise UnknownUser
        if not await self._password_matches(user.password_hash, current):
            raise InvalidCredentials
        problems = password_problems(new, email=user.email)
        if problems:
            raise WeakPassword(problems)
        new_hash = await self._hash(new)
        now = utc_now()
        async with self._kernel.unit_of_work() as uow:
            await uow.session.execute(
                update(User).where(User.id == user_id).values(password_hash=new_hash, password_changed_at=now)
            )
            await self._revoke_where(uow.session, RefreshToken.user_id == user_id)
            revoke(uow, token_ttl=self.policy.access_ttl, subject=str(user_id))
            audit(uow.session, "password_changed", actor=str(user_id), subject=str(user_id), source=source)

    async def assign_roles(
        self, *, actor: str, user_id: uuid.UUID, roles: Sequence[Role], branches: Sequence[str], source: str | None
    ) -> User:
        async with self._kernel.unit_of_work() as uow:
            user = await uow.session.get(User, user_id, with_for_update=True)
            if user is None:
                raise UnknownUser
            before = {"roles": list(user.roles), "branches": list(user.branches)}
            user.roles = sorted({role.value for role in roles})
            user.branches = sorted(set(branches))
            if before != {"roles": user.roles, "branches": user.branches}:
                # Tokens state roles and branches: those issued before the change lie now.
                revoke(uow, token_ttl=self.policy.access_ttl, subject=str(user_id))
            audit(
                uow.session,
                "roles_changed",
                actor=actor,
                subject=str(user_id),
                source=source,
                before=before,
                after={"roles": user.roles, "branches": user.branches},
            )
        return user

    async def request_password_reset(self, *, email: str | None, phone: str | None, source: str | None) -> None:
        """Publish a one-time reset code for notification to deliver (by push, or by SMS to
        a phone-only account). Says nothing about whether the account exists, nor about
        the throttle: the caller gets the same answer either way."""
        condition = User.email == email.lower() if email else User.phone == phone
        now = utc_now()
        async with self._kernel.unit_of_work() as uow:
            user = await uow.session.scalar(select(User).where(condition).with_for_update())
            if user is None:
                return
            recent = await uow.session.scalar(
                select(func.count())
                .select_from(PasswordReset)
                .where(PasswordReset.user_id == user.id, PasswordReset.requested_at > now - self.policy.reset_window)
            )
            if (recent or 0) >= self.policy.max_resets:
                audit(uow.session, "password_reset_throttled", actor=None, subject=str(user.id), source=source)
                return
            # A new code voids every earlier one: only the latest message opens anything.
            await uow.session.execute(
                update(PasswordReset)
                .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
                .values(used_at=now)
            )
            token = secrets.token_urlsafe(32)
            expires_at = now + self.policy.reset_ttl
            uow.session.add(
                PasswordReset(token_hash=secret_digest(token), user_id=user.id, requested_at=now, expires_at=expires_at)
            )
            audit(uow.session, "password_reset_requested", actor=None, subject=str(user.id), source=source)
            uow.emit(
                PasswordResetRequestedV2(
                    user_id=user.id,
                    email=user.email,
                    phone=None if user.email else user.phone,
                    reset_token=token,
                    expires_at=expires_at,
                )
            )

    async def reset_password(self, *, reset_token: str, new_password: str, source: str | None) -> None:
        now = utc_now()
        async with self._kernel.db.sessions() as session:
            reset = await session.get(PasswordReset, secret_digest(reset_token))
            user = await session.get(User, reset.user_id) if reset else None
        if reset is None or user is None or reset.used_at is not None or reset.expires_at <= now:
            raise InvalidResetToken
        problems = password_problems(new_password, email=user.email)
        if problems:
            raise WeakPassword(problems)
        new_hash = await self._hash(new_password)
        async with self._kernel.unit_of_work() as uow:
            claimed = await uow.session.execute(
                update(PasswordReset)
                .where(PasswordReset.token_hash == reset.token_hash, PasswordReset.used_at.is_(None))
                .values(used_at=now)
                .returning(PasswordReset.token_hash)
            )
            if claimed.first() is None:
                raise InvalidResetToken  # used by a concurrent request
            await uow.session.execute(
                update(User).where(User.id == user.id).values(password_hash=new_hash, password_changed_at=now)
            )
            await self._revoke_where(uow.session, RefreshToken.user_id == user.id)
            revoke(uow, token_ttl=self.policy.access_ttl, subject=str(user.id))
            audit(uow.session, "password_reset", actor=str(user.id), subject=str(user.id), source=source)

    async def delete_account(self, *, user_id: uuid.UUID, password: str, source: str | None) -> None:
        """Erase the face vector, end every session, expire memberships and remove the
        account; the audit trail keeps the id (it holds no personal data of its own)."""
        user = await self.get(user_id)
        if user is None:
            raise UnknownUser
        if not await self._password_matches(user.password_hash, password):
            raise InvalidCredentials
        async with self._kernel.unit_of_work() as uow:
            await erase_face(uow, user_id, "account_deleted", actor=str(user_id), source=source)
            await self._revoke_where(uow.session, RefreshToken.user_id == user_id)
            revoke(uow, token_ttl=self.policy.access_ttl, subject=str(user_id))
            memberships = (await uow.session.scalars(select(Membership).where(Membership.member_id == user_id))).all()
            for membership in memberships:
                membership.status, membership.version, membership.updated_at = (
                    "expired",
                    membership.version + 1,
                    utc_now(),
                )
                uow.emit(membership_changed(membership, identity_verified=False))
            await uow.session.execute(delete(FaceConsent).where(FaceConsent.user_id == user_id))
            await uow.session.execute(delete(User).where(User.id == user_id))
            audit(uow.session, "account_deleted", actor=str(user_id), subject=str(user_id), source=source)
            uow.emit(UserDeleted(user_id=user_id))

    # -- sessions ------------------------------------------------------------------

    async def login(self, *, email: str | None, phone: str | None, password: str, source: str | None) -> IssuedTokens:
        normalized = email.lower() if email else (phone or "")
        condition = User.email == normalized if email else User.phone == phone
        async with self._kernel.db.sessions() as session:
            throttle = await session.get(LoginThrottle, (normalized, source or ""))
            user = await session.scalar(select(User).where(condition))
        now = utc_now()
        if throttle is not None and throttle.locked_until is not None and throttle.locked_until > now:
            raise LoginLocked(int((throttle.locked_until - now).total_seconds()) + 1)
        matches = await self._password_matches(user.password_hash if user else self._dummy_hash, password)
        if user is None or not matches:
            await self._record_failure(normalized, user, source)
            raise InvalidCredentials
        # Hashes made with older parameters are upgraded while we hold the password.
        rehashed = await self._hash(password) if self._hasher.check_needs_rehash(user.password_hash) else None
        async with self._kernel.unit_of_work() as uow:
            if rehashed is not None:
                await uow.session.execute(update(User).where(User.id == user.id).values(password_hash=rehashed))
            await uow.session.execute(
                delete(LoginThrottle).where(LoginThrottle.email == normalized, LoginThrottle.source == (source or ""))
            )
            tokens = await self._open_session(uow.session, user, family_id=uuid.uuid4())
            audit(uow.session, "login_succeeded", actor=str(user.id), subject=str(user.id), source=source)
        return tokens

    async def refresh(self, *, refresh_token: str, source: str | None) -> IssuedTokens:
        """Rotate: the presented token is spent and a new one joins its family. A token
        that was already spent or revoked is a replay: the whole family is revoked."""
        now = utc_now()
        async with self._kernel.unit_of_work() as uow:
            record = await uow.session.scalar(
                select(RefreshToken).where(RefreshToken.token_hash == secret_digest(refresh_token)).with_for_update()
            )
            if record is None:
                raise InvalidRefreshToken
            if record.used_at is not None or record.revoked_at is not None:
                await self._revoke_where(uow.session, RefreshToken.family_id == record.family_id)
                revoke(uow, token_ttl=self.policy.access_ttl, session_id=str(record.family_id))
                audit(
                    uow.session,
                    "refresh_token_reused",
                    actor=None,
                    subject=str(record.user_id),
                    source=source,
                    family=str(record.family_id),
                )
                reused = True
            else:
                reused = False
                if record.expires_at <= now:
                    raise InvalidRefreshToken
                user = await uow.session.get(User, record.user_id)
                if user is None:
                    raise InvalidRefreshToken
                record.used_at = now
                tokens = await self._open_session(uow.session, user, family_id=record.family_id)
        if reused:  # raised after the commit, so the family's revocation sticks
            raise InvalidRefreshToken
        return tokens

    async def logout(self, *, refresh_token: str, source: str | None) -> None:
        async with self._kernel.unit_of_work() as uow:
            record = await uow.session.scalar(
                select(RefreshToken).where(RefreshToken.token_hash == secret_digest(refresh_token))
            )
            if record is None:
                return  # already gone: logging out twice is not an error
            await self._revoke_where(uow.session, RefreshToken.family_id == record.family_id)
            revoke(uow, token_ttl=self.policy.access_ttl, session_id=str(record.family_id))
            audit(uow.session, "logout", actor=str(record.user_id), subject=str(record.user_id), source=source)

    async def revocations_in_force(self) -> Sequence[TokensRevoked]:
        return await in_force(self._kernel.db)

    async def purge_stale_throttles(self) -> int:
        """Forget failure counts whose window and lock are both over (they decide nothing)."""
        now = utc_now()
        async with self._kernel.db.transaction() as session:
            result = await session.execute(
                delete(LoginThrottle).where(
                    LoginThrottle.window_started_at < now - self.policy.failure_window,
                    or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until < now),
                )
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def rotate_signing_key(self, *, actor: str, source: str | None) -> str:
        # Tokens signed by the old key live at most access_ttl; keep it published that long.
        kid = await self._keys.rotate(grace=self.policy.access_ttl + timedelta(minutes=1))
        async with self._kernel.unit_of_work() as uow:
            audit(uow.session, "signing_key_rotated", actor=actor, subject=kid, source=source)
        return kid

    async def audit_trail(self, *, subject: str | None, action: str | None, limit: int) -> Sequence[AuditEntry]:
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if subject:
            query = query.where(AuditEntry.subject == subject)
        if action:
            query = query.where(AuditEntry.action == action)
        async with self._kernel.db.sessions() as session:
            return (await session.scalars(query)).all()

    # -- internals -----------------------------------------------------------------

    def _hash_pool(self) -> ThreadPoolExecutor:
        if self._hashing is None:
            self._hashing = ThreadPoolExecutor(max_workers=self._hash_threads, thread_name_prefix="argon2")
        return self._hashing

    async def _hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._hash_pool(), self._hasher.hash, password)

    async def _password_matches(self, stored_hash: str, password: str) -> bool:
        try:
            verify = self._hasher.verify
            return bool(
                await asyncio.get_running_loop().run_in_executor(self._hash_pool(), verify, stored_hash, password)
            )
        except (VerificationError, InvalidHashError):
            return False

    async def aclose(self) -> None:
        """Lets the hashing threads go once the hashes under way are done."""
        pool, self._hashing = self._hashing, None
        if pool is not None:
            pool.shutdown(wait=False)

    async def _record_failure(self, email: str, user: User | None, source: str | None) -> None:
        now = utc_now()
        policy = self.policy
        async with self._kernel.unit_of_work() as uow:
            throttle = await uow.session.get(LoginThrottle, (email, source or ""), with_for_update=True)
            if throttle is None:
                throttle = LoginThrottle(email=email, source=source or "", failures=0, window_started_at=now)
                uow.session.add(throttle)
            if now - throttle.window_started_at > policy.failure_window:
                throttle.failures, throttle.window_started_at = 0, now
            throttle.failures += 1
            subject = str(user.id) if user else None
            audit(uow.session, "login_failed", actor=None, subject=subject, source=source, email=email)
            if throttle.failures >= policy.max_failures:
                throttle.locked_until = now + policy.lockout
                throttle.failures, throttle.window_started_at = 0, now
                audit(uow.session, "login_locked", actor=None, subject=subject, source=source, email=email)

    async def _open_session(self, session: AsyncSession, user: User, *, family_id: uuid.UUID) -> IssuedTokens:
        now = utc_now()
        refresh_token = secrets.token_urlsafe(32)
        session.add(
            RefreshToken(
                id=uuid.uuid4(),
                family_id=family_id,
                user_id=user.id,
                token_hash=secret_digest(refresh_token),
                issued_at=now,
                expires_at=now + self.policy.refresh_ttl,
            )
        )
        issuer = TokenIssuer(
            self._keys.active,
            issuer=self._kernel.settings.jwt_issuer,
            audience=self._kernel.settings.jwt_audience,
            ttl=self.policy.access_ttl,
        )
        access = issuer.issue(
            str(user.id), [Role(role) for role in user.roles], user.branches, now=now, session_id=str(family_id)
        )
        return IssuedTokens(
            access_token=access,
            expires_in=int(self.policy.access_ttl.total_seconds()),
            refresh_token=refresh_token,
            refresh_expires_in=int(self.policy.refresh_ttl.total_seconds()),
        )

    @staticmethod
    async def _revoke_where(session: AsyncSession, condition: Any) -> None:
        await session.execute(
            update(RefreshToken).where(condition, RefreshToken.revoked_at.is_(None)).values(revoked_at=utc_now())
        )
