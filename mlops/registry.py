"""The model registry: versions of each family with their pack files, metrics, status and
lineage.

Lifecycle: ``candidate`` (registered by a training run or an operator) → ``verified``
(passed the family's verification gate) or ``rejected`` → ``deployed`` (served by a
canary share or by every instance) → ``retired`` (replaced, or rolled back). Only a
verified version (or a retired one, which was verified before) may be deployed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from common.events.envelope import utc_now
from contracts import PackFile
from mlops.models import FamilyState, ModelVersion

STATUSES = ("candidate", "verified", "rejected", "deployed", "retired")
DEPLOYABLE = frozenset({"verified", "deployed", "retired"})


class RegistryError(Exception):
    """A registry operation refused: ``status`` is the HTTP status it maps to."""

    def __init__(self, reason: str, *, status: int = 409) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


async def register(
    session: AsyncSession,
    *,
    family: str,
    version: str,
    files: Sequence[PackFile],
    code_version: str,
    data_snapshot_id: str | None = None,
    parameters: dict[str, Any] | None = None,
    parent_version: str | None = None,
    metrics: dict[str, Any] | None = None,
    embedding_space: str | None = None,
    run_id: uuid.UUID | None = None,
) -> ModelVersion:
    """Add a candidate; a version number is never reused within a family."""
    if await find(session, family=family, version=version) is not None:
        raise RegistryError(f"{family} {version} exists already")
    row = ModelVersion(
        id=uuid.uuid4(),
        family=family,
        version=version,
        status="candidate",
        files=[file.model_dump() for file in files],
        metrics=metrics or {},
        verification={},
        data_snapshot_id=data_snapshot_id,
        code_version=code_version,
        parameters=parameters or {},
        parent_version=parent_version,
        embedding_space=embedding_space,
        run_id=run_id,
        created_at=utc_now(),
    )
    session.add(row)
    await session.flush()
    return row


async def find(session: AsyncSession, *, family: str, version: str) -> ModelVersion | None:
    return await session.scalar(
        select(ModelVersion).where(ModelVersion.family == family, ModelVersion.version == version)
    )


async def get(session: AsyncSession, *, family: str, version: str, for_update: bool = False) -> ModelVersion:
    query = select(ModelVersion).where(ModelVersion.family == family, ModelVersion.version == version)
    if for_update:
        query = query.with_for_update()
    row = await session.scalar(query)
    if row is None:
        raise RegistryError(f"{family} {version} is not registered", status=404)
    return row


async def versions(
    session: AsyncSession, *, family: str | None = None, status: str | None = None, limit: int = 100
) -> Sequence[ModelVersion]:
    query = select(ModelVersion).order_by(ModelVersion.created_at.desc()).limit(limit)
    if family is not None:
        query = query.where(ModelVersion.family == family)
    if status is not None:
        query = query.where(ModelVersion.status == status)
    return (await session.scalars(query)).all()


def pack_files(row: ModelVersion) -> tuple[PackFile, ...]:
    return tuple(PackFile.model_validate(item) for item in row.files)


async def record_verification(
    session: AsyncSession, *, family: str, version: str, passed: bool, report: dict[str, Any]
) -> ModelVersion:
    """The gate's outcome: verified or rejected (a rejected version may be verified again)."""
    row = await get(session, family=family, version=version, for_update=True)
    if row.status not in ("candidate", "rejected", "verified"):
        raise RegistryError(f"{family} {version} is {row.status}: only candidates are verified")
    row.verification = report
    row.metrics = {**row.metrics, **report.get("metrics", {})}
    row.status = "verified" if passed else "rejected"
    row.verified_at = utc_now() if passed else None
    return row


async def next_version(session: AsyncSession, *, family: str) -> str:
    """The next minor version of ``family`` (``1.<n>.0``): task packs need semver."""
    rows = (await session.scalars(select(ModelVersion.version).where(ModelVersion.family == family))).all()
    highest = 0
    for version in rows:
        parts = version.split(".")
        if len(parts) == 3 and parts[0] == "1" and parts[1].isdigit():
            highest = max(highest, int(parts[1]))
    return f"1.{highest + 1}.0"


async def lock_family(session: AsyncSession, *, family: str) -> FamilyState:
    """The family's state row, locked for this transaction: what serialises deploys,
    promotions, rollbacks and the training trigger of one family. Created on first use
    (concurrent first uses both insert; the loser's insert does nothing)."""
    insert = sqlite.insert if session.get_bind().dialect.name == "sqlite" else postgresql.insert
    await session.execute(
        insert(FamilyState)
        .values(family=family, updated_at=utc_now())
        .on_conflict_do_nothing(index_elements=["family"])
    )
    state = await session.get(FamilyState, family, with_for_update=True, populate_existing=True)
    assert state is not None
    return state
