"""The one kernel-level event: access tokens that must stop being honoured before they expire.

The issuer publishes it for every reason a token dies early (logout, password change, role
change, device revoked, account deleted); every replica of every service applies it to its
:class:`common.security.TokenVerifier`. The kernel knows this event only, never the
reasons, so no service's events leak into the kernel.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Self

from pydantic import Field, model_validator

from common.events.envelope import Event


class TokensRevoked(Event):
    """Tokens of ``subject`` issued before ``issued_before``, or every token of one session
    (``session_id``: a token's ``sid`` claim, or a single token's ``jti``), are refused
    until ``expires_at``; by then every such token has expired on its own."""

    event_name: ClassVar[str] = "TokensRevoked"
    event_version: ClassVar[int] = 1

    subject: str | None = Field(default=None, min_length=1, max_length=254)
    session_id: str | None = Field(default=None, min_length=1, max_length=64)
    issued_before: datetime
    expires_at: datetime

    @model_validator(mode="after")
    def _names_what_it_revokes(self) -> Self:
        if (self.subject is None) == (self.session_id is None):
            raise ValueError("a revocation names a subject or a session, not both and not neither")
        return self
