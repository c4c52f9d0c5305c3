"""auth's signing keys: loaded from its database, created on first start, rotated with a
grace period so tokens signed by the previous key stay valid until they expire."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from auth.models import SigningKeyRecord
from common.db import Database
from common.events.envelope import utc_now
from common.security import SigningKey, jwks_document


class KeyRing:
    """The active signing key plus every key still trusted for verification."""

    def __init__(self, database: Database, passphrase: bytes, *, legacy_passphrase: bytes | None = None) -> None:
        self._database = database
        self._passphrase = passphrase
        # Keys encrypted under the platform-wide secret before auth had a secret of its
        # own: opened with it once, then re-encrypted under ``passphrase``.
        self._legacy = legacy_passphrase if legacy_passphrase != passphrase else None
        self._keys: list[SigningKey] = []

    @property
    def active(self) -> SigningKey:
        if not self._keys:
            raise RuntimeError("key ring not loaded")
        return self._keys[0]

    async def load(self) -> None:
        """Load published keys (the signing key first); create the first key if none."""
        now = utc_now()
        async with self._database.transaction() as session:
            records = (
                await session.scalars(
                    select(SigningKeyRecord)
                    .where(or_(SigningKeyRecord.active, SigningKeyRecord.retire_at > now))
                    .order_by(SigningKeyRecord.active.desc(), SigningKeyRecord.created_at.desc())
                )
            ).all()
            opened = self._decrypt(records)
            if not any(record.active for record in records):
                key = SigningKey.generate()
                session.add(self._record(key, now))
                self._keys = [key, *opened]
                return
        self._keys = opened

    async def rotate(self, *, grace: timedelta) -> str:
        """Make a new key the signing key; the old ones stay published for ``grace``."""
        key = SigningKey.generate()
        now = utc_now()
        async with self._database.transaction() as session:
            await session.execute(
                update(SigningKeyRecord).where(SigningKeyRecord.active).values(active=False, retire_at=now + grace)
            )
            session.add(self._record(key, now))
        await self.load()
        return key.kid

    def jwks(self) -> dict[str, Any]:
        return jwks_document(self._keys)

    def _record(self, key: SigningKey, now: datetime) -> SigningKeyRecord:
        return SigningKeyRecord(
            kid=key.kid, private_key_pem=key.to_encrypted_pem(self._passphrase), created_at=now, active=True
        )

    def _decrypt(self, records: Any) -> list[SigningKey]:
        """Open every record (re-encrypting legacy ones in the caller's transaction)."""
        keys = []
        for record in records:
            try:
                key = SigningKey.from_encrypted_pem(record.private_key_pem, self._passphrase)
            except ValueError:
                if self._legacy is None:
                    raise
                key = SigningKey.from_encrypted_pem(record.private_key_pem, self._legacy)
                record.private_key_pem = key.to_encrypted_pem(self._passphrase)
            keys.append(key)
        return keys
