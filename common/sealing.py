"""Biometric sealing keys as settings, and key rotation for sealed values stored in a
service's own table."""

from __future__ import annotations

import uuid
from typing import Any, Self

from pydantic import Field, SecretStr, model_validator
from sqlalchemy import select, update
from sqlalchemy.orm import InstrumentedAttribute

from common.crypto import KEY_ID_PATTERN, LOCAL_SEALING_KEY, SealingKeys, VectorSealer, sealing_key_problems
from common.db import Database
from common.settings import PlatformSettings


class BiometricSealingSettings(PlatformSettings):
    """The settings of a service that holds face vectors (auth and access, nobody else)."""

    # Seals face vectors at rest and in FaceEnrolled; auth and access hold the same keys,
    # nobody else. A JSON object of key id -> key: the one named by the id seals, every one
    # listed opens (an old key stays until `smartgym keys rotate` re-sealed its values).
    biometric_sealing_keys: dict[str, SecretStr] = Field(
        default_factory=lambda: {"1": SecretStr(LOCAL_SEALING_KEY)},
        min_length=1,
        max_length=8,
        description="Biometric sealing keys (JSON: key id -> key), held by auth and access only.",
    )
    biometric_sealing_key_id: str = Field(
        default="1", pattern=KEY_ID_PATTERN, description="The biometric sealing key that seals new values."
    )

    @model_validator(mode="after")
    def _biometric_keys_are_safe(self) -> Self:
        problems = sealing_key_problems(self.biometric_sealing_keys, self.biometric_sealing_key_id)
        if self.biometric_sealing_key_id not in self.biometric_sealing_keys or (
            problems and self.environment == "production"
        ):
            raise ValueError("unsafe biometric sealing keys: " + "; ".join(problems))
        return self

    def sealing_keys(self) -> SealingKeys:
        return SealingKeys.of(
            self.biometric_sealing_keys,
            self.biometric_sealing_key_id,
            legacy=self.key_encryption_secret.get_secret_value(),
        )


async def reseal_rows(
    database: Database,
    table: type[Any],
    owner: InstrumentedAttribute[uuid.UUID],
    sealed: InstrumentedAttribute[bytes],
    sealer: VectorSealer,
    *,
    batch: int = 500,
) -> tuple[int, int]:
    """Re-seal, under the current key, every value of ``table`` sealed under another one
    (the owner's id is the associated data and the key to page by). One transaction per
    batch, rows locked: a value re-written meanwhile (a re-enrolment) is simply re-read.
    Returns (re-sealed, seen)."""
    resealed = seen = 0
    after: uuid.UUID | None = None
    while True:
        async with database.transaction() as session:
            statement = select(owner, sealed).order_by(owner).limit(batch).with_for_update()
            if after is not None:
                statement = statement.where(owner > after)
            rows = (await session.execute(statement)).all()
            if not rows:
                return resealed, seen
            for member_id, value in rows:
                seen += 1
                if sealer.is_current(value):
                    continue
                await session.execute(
                    update(table).where(owner == member_id).values({sealed.key: sealer.reseal(member_id, value)})
                )
                resealed += 1
            after = rows[-1][0]
