"""Partner tokens at rest (Strava's access and refresh tokens): AES-256-GCM under a key
derived from the platform's key-encryption secret for this purpose only, with the owner's
id as associated data, so a database dump does not hand out members' Strava accounts and
a sealed token cannot be moved to another member's row."""

from __future__ import annotations

import base64
import os
import uuid

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12
PURPOSE = b"smartgym running partner tokens v1"


class TokenSealer:
    def __init__(self, secret: bytes) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PURPOSE).derive(secret)
        self._aead = AESGCM(key)

    def seal(self, owner: uuid.UUID, token: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        return base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, token.encode(), owner.bytes)).decode()

    def open(self, owner: uuid.UUID, sealed: str) -> str:
        """Raises ``cryptography.exceptions.InvalidTag`` if tampered with or moved."""
        raw = base64.urlsafe_b64decode(sealed.encode())
        return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], owner.bytes).decode()
