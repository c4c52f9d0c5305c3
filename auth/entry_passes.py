"""Entry passes: the short-lived signed code a member's app shows as a QR code at the gate.

It is a JWT for a separate audience (so it can never be used as an access token, nor an
access token as a pass), bound to one member and one branch, valid at most a minute, with
a unique ``jti`` that access accepts once. Access checks it offline against auth's public
keys; the app asks for a fresh one before the last expires (rotation).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from auth.keys import KeyRing
from common.security import Role, TokenIssuer
from common.settings import PlatformSettings


@dataclass(frozen=True)
class EntryPass:
    code: str
    expires_in: int


class EntryPasses:
    def __init__(self, keys: KeyRing, settings: PlatformSettings) -> None:
        self._keys = keys
        self._settings = settings

    def issue(self, member_id: uuid.UUID, branch_id: str) -> EntryPass:
        ttl = self._settings.entry_pass_ttl_s
        issuer = TokenIssuer(
            self._keys.active,
            issuer=self._settings.jwt_issuer,
            audience=self._settings.entry_pass_audience,
            ttl=timedelta(seconds=ttl),
        )
        return EntryPass(code=issuer.issue(str(member_id), [Role.CUSTOMER], [branch_id]), expires_in=ttl)
