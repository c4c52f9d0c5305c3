"""auth's signing keys are encrypted under auth's own secret, not the platform-wide one;
keys written under the old shared secret are re-encrypted at start."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from auth.keys import KeyRing
from auth.models import SigningKeyRecord
from common.db import Database
from common.security import SigningKey


async def test_keys_move_from_the_shared_secret_to_auths_own(settings):
    database = Database(settings.database_url("auth"))
    try:
        before_split = KeyRing(database, b"the-old-platform-wide-secret")
        await before_split.load()
        kid = before_split.active.kid

        after_split = KeyRing(database, b"auths-own-signing-secret", legacy_passphrase=b"the-old-platform-wide-secret")
        await after_split.load()
        assert after_split.active.kid == kid  # the same key: tokens already issued stay valid

        async with database.sessions() as session:
            [stored] = (await session.scalars(select(SigningKeyRecord))).all()
        with pytest.raises(ValueError, match="password"):
            SigningKey.from_encrypted_pem(stored.private_key_pem, b"the-old-platform-wide-secret")
        only_new = KeyRing(database, b"auths-own-signing-secret")
        await only_new.load()
        assert only_new.active.kid == kid
    finally:
        await database.dispose()


def test_auth_reads_its_signing_secret_from_its_own_variable(monkeypatch):
    from auth.settings import AuthSettings

    monkeypatch.setenv("SMARTGYM_SIGNING_KEY_SECRET", "from-auths-own-secret")
    assert AuthSettings().signing_key_secret.get_secret_value() == "from-auths-own-secret"
    assert AuthSettings().key_encryption_secret.get_secret_value() != "from-auths-own-secret"
