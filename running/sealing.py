"""Partner tokens at rest (Strava's access and refresh tokens), sealed with the kernel's
sealer (common.crypto) under a key derived from the platform's key-encryption secret for
this purpose only, with the owner's id as associated data, so a database dump does not
hand out members' Strava accounts and a sealed token cannot be moved to another member's
row. Stored as URL-safe base64 text."""

from __future__ import annotations

import base64
import uuid

from common.crypto import Sealer, SealingKeys

PURPOSE = b"smartgym running partner tokens v1"


class TokenSealer:
    def __init__(self, secret: bytes) -> None:
        self._sealer = Sealer(SealingKeys("1", {"1": secret}), purpose=PURPOSE)

    def seal(self, owner: uuid.UUID, token: str) -> str:
        return base64.urlsafe_b64encode(self._sealer.seal_bytes(owner, token.encode())).decode()

    def open(self, owner: uuid.UUID, sealed: str) -> str:
        """Raises ``cryptography.exceptions.InvalidTag`` if tampered with or moved."""
        return self._sealer.open_bytes(owner, base64.urlsafe_b64decode(sealed.encode())).decode()
