"""Sealing values at rest: the one way SmartGym encrypts a face vector, wherever it is
(auth's store, the FaceEnrolled event in transit, access's cold store), and any other
secret a service keeps (running's partner tokens).

AES-256-GCM under a key derived per *purpose* from a versioned sealing key, with the
owner's id (and the key id) bound in as associated data, so a sealed value cannot be
moved to another member's row or opened for another purpose. Every sealed value names
the key that sealed it, so keys rotate without a flag day: the ring holds the current key
and the older ones still in use, ``smartgym keys rotate`` re-seals what the old keys
sealed, and an old key leaves the settings only once nothing sealed under it remains.

Wire layout: ``MAGIC | len(key_id) | key_id | nonce(12) | ciphertext+tag``. Values from
before key ids existed are ``nonce | ciphertext+tag`` under a key derived from the
platform's key-encryption secret (the *legacy* key); they still open, and rotation
re-seals them under the current key.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from numpy.typing import NDArray

NONCE_BYTES = 12
MAGIC = b"\x00SGv"
KEY_ID_PATTERN = r"^[A-Za-z0-9._-]{1,32}$"
MIN_KEY_CHARS = 32
LOCAL_SEALING_KEY = "local-development-only-biometric-sealing-key"

__all__ = ["InvalidTag", "Sealer", "SealingKeys", "VectorSealer", "sealing_key_problems"]


@dataclass(frozen=True)
class SealingKeys:
    """The biometric sealing keys a service holds: ``current`` seals, all of them open."""

    current: str
    keys: Mapping[str, bytes]
    legacy: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise ValueError(f"sealing key {self.current!r} is not among the configured keys")
        for key_id in self.keys:
            if not re.fullmatch(KEY_ID_PATTERN, key_id):
                raise ValueError(f"sealing key id {key_id!r} must match {KEY_ID_PATTERN}")

    @classmethod
    def of(cls, keys: Mapping[str, object], current: str, *, legacy: str | None = None) -> SealingKeys:
        """From settings values (``SecretStr`` or plain strings)."""

        def raw(value: object) -> bytes:
            getter = getattr(value, "get_secret_value", None)
            return str(getter() if getter else value).encode()

        return cls(current, {key_id: raw(value) for key_id, value in keys.items()}, legacy.encode() if legacy else None)


def sealing_key_problems(keys: Mapping[str, object], current: str) -> list[str]:
    """Why these keys must not protect real members' faces (for production refusals)."""
    problems: list[str] = []
    for key_id, value in keys.items():
        getter = getattr(value, "get_secret_value", None)
        secret = str(getter() if getter else value)
        if secret == LOCAL_SEALING_KEY:
            problems.append(f"biometric sealing key {key_id} is the local default")
        elif len(secret) < MIN_KEY_CHARS or len(set(secret)) < 10:
            problems.append(f"biometric sealing key {key_id} is weak (at least {MIN_KEY_CHARS} random characters)")
    if current not in keys:
        problems.append(f"biometric sealing key id {current!r} is not configured")
    return problems


class Sealer:
    """Seals bytes for one purpose under a ring of versioned keys (see the module doc)."""

    def __init__(self, keys: SealingKeys, *, purpose: bytes) -> None:
        # One derived key per purpose: a value sealed for one use opens nowhere else.
        self.current = keys.current
        self._aeads = {key_id: AESGCM(_derive(secret, purpose)) for key_id, secret in keys.keys.items()}
        self._legacy = AESGCM(_derive(keys.legacy, purpose)) if keys.legacy is not None else None

    def seal_bytes(self, owner: uuid.UUID, plain: bytes) -> bytes:
        key_id = self.current.encode()
        header = MAGIC + bytes([len(key_id)]) + key_id
        nonce = os.urandom(NONCE_BYTES)
        return header + nonce + self._aeads[self.current].encrypt(nonce, plain, owner.bytes + header)

    def open_bytes(self, owner: uuid.UUID, sealed: bytes) -> bytes:
        """Raises ``InvalidTag`` if tampered with, moved to another owner, or sealed under
        a key this ring does not hold."""
        parsed = _parse(sealed)
        if parsed is not None:
            key_id, header, body = parsed
            aead = self._aeads.get(key_id)
            if aead is not None:
                try:
                    return aead.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], owner.bytes + header)
                except InvalidTag:
                    if self._legacy is None:
                        raise
            elif self._legacy is None:
                raise InvalidTag
        if self._legacy is None:
            raise InvalidTag
        return self._legacy.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], owner.bytes)

    def key_id(self, sealed: bytes) -> str | None:
        """The key that sealed ``sealed`` (None: the legacy key)."""
        parsed = _parse(sealed)
        return parsed[0] if parsed is not None and parsed[0] in self._aeads else None

    def is_current(self, sealed: bytes) -> bool:
        return self.key_id(sealed) == self.current


class VectorSealer(Sealer):
    """Face vectors (float32) sealed and opened."""

    def seal(self, owner: uuid.UUID, vector: Sequence[float] | NDArray[np.float32]) -> bytes:
        return self.seal_bytes(owner, np.asarray(vector, np.float32).tobytes())

    def open(self, owner: uuid.UUID, sealed: bytes) -> NDArray[np.float32]:
        return _vector(self.open_bytes(owner, sealed))

    def reseal(self, owner: uuid.UUID, sealed: bytes) -> bytes:
        """``sealed`` under the current key (unchanged if it already is)."""
        return sealed if self.is_current(sealed) else self.seal(owner, self.open(owner, sealed))


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)


def _parse(sealed: bytes) -> tuple[str, bytes, bytes] | None:
    if not sealed.startswith(MAGIC) or len(sealed) <= len(MAGIC) + 1:
        return None
    length = sealed[len(MAGIC)]
    end = len(MAGIC) + 1 + length
    if length == 0 or len(sealed) < end + NONCE_BYTES + 16:
        return None
    try:
        key_id = sealed[len(MAGIC) + 1 : end].decode("ascii")
    except UnicodeDecodeError:
        return None
    return key_id, sealed[:end], sealed[end:]


def _vector(plain: bytes) -> NDArray[np.float32]:
    if len(plain) % 4:
        raise ValueError("sealed value is not a float32 vector")
    return np.frombuffer(plain, np.float32)
