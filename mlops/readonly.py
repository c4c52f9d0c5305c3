"""Read-only access to helper's and auth's databases, the one exception to "a service reads
only its own database" (training needs their data).

On PostgreSQL mlops connects as the role their migrations create (SELECT only, read-only
transactions by default); in embedded mode it opens their SQLite files with
``mode=ro``. Either way a write is refused by the database itself, not by our good
manners. mlops never imports their models: the few columns it reads are named here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import bindparam, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from mlops.settings import MlopsSettings


def reader_url(settings: MlopsSettings, service: str) -> URL:
    """How mlops reads ``service``'s database (helper or auth)."""
    explicit = {"helper": settings.mlops_helper_read_url, "auth": settings.mlops_auth_read_url}[service]
    if explicit:
        return make_url(explicit)
    url = make_url(settings.database_url(service))
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "").resolve()
        # uri=true lets SQLite read the file: URI and its mode=ro: no write can succeed.
        return URL.create(url.drivername, database=f"file:{path.as_posix()}", query={"mode": "ro", "uri": "true"})
    password = settings.mlops_reader_password.get_secret_value() if settings.mlops_reader_password else None
    return url.set(username=settings.mlops_reader_role, password=password)


def reader_engine(settings: MlopsSettings, service: str) -> AsyncEngine:
    return create_async_engine(reader_url(settings, service), pool_pre_ping=True)


@dataclass(frozen=True)
class PhotoRow:
    task_id: uuid.UUID
    position: int
    key: str
    sha256: str
    submitted_at: datetime


_PHOTOS = text(
    "SELECT task_id, position, key, sha256, submitted_at FROM task_photos "
    "WHERE task_id IN :ids ORDER BY task_id, position"
).bindparams(bindparam("ids", expanding=True))


def _uuid(value: object) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    text_value = str(value)
    # SQLite keeps UUIDs as 32 hex characters.
    return uuid.UUID(hex=text_value) if len(text_value) == 32 else uuid.UUID(text_value)


def _uuid_param(engine: AsyncEngine, value: uuid.UUID) -> object:
    return value.hex if engine.dialect.name == "sqlite" else value


async def task_photos(engine: AsyncEngine, task_ids: Iterable[uuid.UUID]) -> Sequence[PhotoRow]:
    """The stored photos of these tasks (metadata only: the bytes are in the photo store)."""
    ids = [_uuid_param(engine, task_id) for task_id in task_ids]
    if not ids:
        return []
    found: list[PhotoRow] = []
    async with engine.connect() as connection:
        for start in range(0, len(ids), 500):
            rows = await connection.execute(_PHOTOS, {"ids": ids[start : start + 500]})
            for task_id, position, key, sha256, submitted_at in rows:
                found.append(PhotoRow(_uuid(task_id), int(position), str(key), str(sha256), _aware(submitted_at)))
    return found


def _aware(value: object) -> datetime:
    from datetime import UTC

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"not a timestamp: {value!r}")
    return value if value.tzinfo else value.replace(tzinfo=UTC)
