"""Entry passes (the member's rotating QR code), checked offline against auth's public keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from access.rules import Reason
from common.security import InvalidToken, JwksCache, Role, TokenVerifier
from common.settings import PlatformSettings

CLOCK_SKEW_S = 5.0


@dataclass(frozen=True)
class PassCheck:
    reason: Reason  # GRANTED: a genuine, current pass for this branch (still to be authorised)
    member_id: uuid.UUID | None = None
    token_id: str | None = None
    expires_at: datetime | None = None


class EntryPassChecker:
    def __init__(self, keys: JwksCache, settings: PlatformSettings) -> None:
        # Its own verifier: a different audience, and no cache — each pass is seen once.
        self._verifier = TokenVerifier(
            keys,
            issuer=settings.jwt_issuer,
            audience=settings.entry_pass_audience,
            leeway_s=CLOCK_SKEW_S,
            cache_size=0,
        )
        self._max_life_s = settings.entry_pass_ttl_s + CLOCK_SKEW_S

    async def check(self, code: str, *, branch_id: str, now: datetime) -> PassCheck:
        try:
            principal = await self._verifier.verify(code)
        except InvalidToken as exc:
            return PassCheck(Reason.PASS_EXPIRED if exc.reason == "token expired" else Reason.PASS_INVALID)
        try:
            member_id = uuid.UUID(principal.subject)
        except ValueError:
            return PassCheck(Reason.PASS_INVALID)
        expires_at = principal.expires_at
        if (
            not principal.has_any_role({Role.CUSTOMER})
            or principal.token_id is None
            or expires_at is None
            # A pass that lives longer than the rotation period was not minted by our rules.
            or (expires_at - now).total_seconds() > self._max_life_s
        ):
            return PassCheck(Reason.PASS_INVALID, member_id)
        if branch_id not in principal.branches:
            return PassCheck(Reason.PASS_WRONG_BRANCH, member_id)
        return PassCheck(Reason.GRANTED, member_id, principal.token_id, expires_at)
