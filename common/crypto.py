"""Sealing small secrets at rest (face vectors): AES-256-GCM under a key derived from the
platform's key-encryption secret, with the owner's id bound in as associated data so a
sealed value cannot be moved to another owner's row."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from numpy.typing import NDArray

NONCE_BYTES = 12


class VectorSealer:
    def __init__(self, secret: bytes, *, purpose: bytes) -> None:
        # One derived key per purpose: a value sealed by one service opens nowhere else.
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)
        self._aead = AESGCM(key)

    def seal(self, owner: uuid.UUID, vector: Sequence[float] | NDArray[np.float32]) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        plain = np.asarray(vector, np.float32).tobytes()
        return nonce + self._aead.encrypt(nonce, plain, owner.bytes)

    def open(self, owner: uuid.UUID, sealed: bytes) -> NDArray[np.float32]:
        """Raises ``cryptography.exceptions.InvalidTag`` if tampered with or moved."""
        plain = self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], owner.bytes)
        return np.frombuffer(plain, np.float32)
