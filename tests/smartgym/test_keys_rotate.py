"""`smartgym keys rotate`: stored face vectors move to the current biometric sealing key;
until then values under older keys (and from before key ids) still open."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import create_engine, insert, select

from access.face_store import FACE_SEALING_PURPOSE as ACCESS_PURPOSE
from access.models import FaceVector
from auth.faces import FACE_SEALING_PURPOSE as AUTH_PURPOSE
from auth.models import FaceEnrollment, User
from common.crypto import InvalidTag, SealingKeys, VectorSealer
from common.db import sync_url
from common.migrations import upgrade
from tests.support.processes import clean_env

OLD, NEW = "k2026a-" + "o" * 8 + "0123456789abcdefghij", "k2026b-" + "n" * 8 + "0123456789abcdefghij"
LEGACY = "the-platform-key-encryption-secret-of-old"


def _legacy_seal(purpose: bytes, owner: uuid.UUID, vector: np.ndarray) -> bytes:
    """How values were sealed before key ids: nonce | ciphertext under the KEK."""
    import os

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(LEGACY.encode())
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, vector.astype(np.float32).tobytes(), owner.bytes)


def test_rotate_reseals_auth_and_access_stores(postgres, tmp_path: Path) -> None:
    urls = {service: postgres.create(service) for service in ("auth", "access")}
    for service, url in urls.items():
        upgrade(service, url)
    old_ring = SealingKeys.of({"1": OLD}, "1", legacy=LEGACY)
    rng = np.random.default_rng(7)
    vectors = {uuid.uuid4(): rng.standard_normal(128).astype(np.float32) for _ in range(5)}
    now = datetime.now(UTC)
    members = list(vectors)
    with create_engine(sync_url(urls["access"])).begin() as access_db:
        sealer = VectorSealer(old_ring, purpose=ACCESS_PURPOSE)
        access_db.execute(
            insert(FaceVector),
            [
                {
                    "member_id": member,
                    "model": "m",
                    "embedding_space": "s",
                    "enrolled_at": now,
                    "version": 1,
                    # one value from before key ids, the rest under key 1
                    "sealed": _legacy_seal(ACCESS_PURPOSE, member, vector)
                    if member == members[0]
                    else sealer.seal(member, vector),
                }
                for member, vector in vectors.items()
            ],
        )
    with create_engine(sync_url(urls["auth"])).begin() as auth_db:
        sealer = VectorSealer(old_ring, purpose=AUTH_PURPOSE)
        for member, vector in vectors.items():
            auth_db.execute(
                insert(User).values(
                    id=member, email=f"{member.hex}@example.com", password_hash="x", roles=["customer"], created_at=now
                )
            )
            auth_db.execute(
                insert(FaceEnrollment).values(
                    user_id=member,
                    model="m",
                    embedding_space="s",
                    enrolled_at=now,
                    version=1,
                    sealed_embedding=sealer.seal(member, vector),
                )
            )

    env = clean_env(
        SMARTGYM_ENVIRONMENT="test",
        SMARTGYM_DATA_DIR=str(tmp_path),
        SMARTGYM_AUTH_DATABASE_URL=urls["auth"],
        SMARTGYM_ACCESS_DATABASE_URL=urls["access"],
        SMARTGYM_KEY_ENCRYPTION_SECRET=LEGACY,
        SMARTGYM_BIOMETRIC_SEALING_KEYS=json.dumps({"1": OLD, "2": NEW}),
        SMARTGYM_BIOMETRIC_SEALING_KEY_ID="2",
    )
    done = subprocess.run(
        [sys.executable, "-m", "smartgym", "keys", "rotate"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "auth: re-sealed 5 of 5" in done.stdout
    assert "access: re-sealed 5 of 5" in done.stdout

    # After rotation the old key and the legacy secret can go: the new key alone opens all.
    new_only = SealingKeys.of({"2": NEW}, "2")
    for service, purpose, column in (
        ("auth", AUTH_PURPOSE, (FaceEnrollment.user_id, FaceEnrollment.sealed_embedding)),
        ("access", ACCESS_PURPOSE, (FaceVector.member_id, FaceVector.sealed)),
    ):
        sealer = VectorSealer(new_only, purpose=purpose)
        with create_engine(sync_url(urls[service])).connect() as db:
            stored = db.execute(select(*column)).all()
        assert len(stored) == 5
        for member, sealed in stored:
            assert sealer.key_id(sealed) == "2"
            assert np.allclose(sealer.open(member, sealed), vectors[member])
            with pytest.raises(InvalidTag):
                VectorSealer(old_ring, purpose=purpose).open(member, sealed)

    again = subprocess.run(
        [sys.executable, "-m", "smartgym", "keys", "rotate", "--service", "access"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "access: re-sealed 0 of 5" in again.stdout  # idempotent


def test_sealed_values_are_bound_to_owner_and_purpose() -> None:
    ring = SealingKeys.of({"1": OLD}, "1")
    member, other = uuid.uuid4(), uuid.uuid4()
    sealed = VectorSealer(ring, purpose=b"a").seal(member, np.ones(4, np.float32))
    with pytest.raises(InvalidTag):
        VectorSealer(ring, purpose=b"a").open(other, sealed)  # moved to another member's row
    with pytest.raises(InvalidTag):
        VectorSealer(ring, purpose=b"b").open(member, sealed)  # opened for another purpose
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(InvalidTag):
        VectorSealer(ring, purpose=b"a").open(member, tampered)


def test_production_refuses_default_or_weak_biometric_keys() -> None:
    from access.settings import AccessSettings
    from auth.settings import AuthSettings

    production: dict[str, Any] = {
        "environment": "production",
        "broker_url": "amqps://smartgym:Vq3xT9pLm2Wz7Rk4Nc8Hd6Jf@broker/",
        "key_encryption_secret": "a-real-key-encryption-secret-0123456789",
    }
    for settings_class in (AuthSettings, AccessSettings):
        if settings_class is AuthSettings:
            production = {
                **production,
                "signing_key_secret": "Gm4tR8wQz2Lp6Xv9Bn3Kd7Hs5Jy1Fc0A",
                "cardcheck_api_key": "Pz8Lw3Nq6Tr1Vx4Ks9Mb2Hd7Gf5",
            }
        with pytest.raises(ValueError, match="local default"):
            settings_class(**production)
        with pytest.raises(ValueError, match="weak"):
            settings_class(**production, biometric_sealing_keys={"1": "short"})
        with pytest.raises(ValueError, match="not configured"):
            settings_class(environment="test", biometric_sealing_key_id="9")
        ok = settings_class(**production, biometric_sealing_keys={"1": NEW})
        assert ok.sealing_keys().current == "1"
