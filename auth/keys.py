"""auth's signing keys: loaded from its database, created on first start."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from auth.models import SigningKeyRecord
from common.db import Database
from common.events.envelope import utc_now
from common.security import SigningKey, jwks_document


class KeyRing:
    """The active signing key plus every key still trusted for verification."""

    def __init__(self, database: Database, passphrase: bytes) -> None:
        self._database = database
        self._passphrase = passphrase
        self._keys: list[SigningKey] = []

    @property
    def active(self) -> SigningKey:
        if not self._keys:
            raise RuntimeError("key ring not loaded")
        return self._keys[0]

    async def load(self) -> None:
        """Load stored keys (newest active first); generate the first key if there is none."""
        async with self._database.transaction() as session:
            records = (
                await session.scalars(
                    select(SigningKeyRecord).where(SigningKeyRecord.active).order_by(SigningKeyRecord.created_at.desc())
                )
            ).all()
            if not records:
                key = SigningKey.generate()
                session.add(
                    SigningKeyRecord(
                        kid=key.kid,
                        private_key_pem=key.to_encrypted_pem(self._passphrase),
                        created_at=utc_now(),
                        active=True,
                    )
                )
                self._keys = [key]
                return
        self._keys = [SigningKey.from_encrypted_pem(record.private_key_pem, self._passphrase) for record in records]

    def jwks(self) -> dict[str, Any]:
        return jwks_document(self._keys)
