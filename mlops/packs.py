"""Model packs in the kernel's object store, under ``models/<family>/<version>/<file>``,
and helper's task photos, read from where helper keeps them (never written)."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

from common.objectstore import ObjectStore, S3Location, object_store
from contracts import PackFile
from mlops.settings import MlopsSettings

PACK_KEY_PATTERN = re.compile(
    r"^models/(face|task_judge)/[A-Za-z0-9][A-Za-z0-9._+-]{0,79}/[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
)
# helper's photo keys: <branch>/<task id>/<n>.jpg|png
PHOTO_KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}/[0-9a-f-]{36}/[0-9]\.(jpg|png)$")
CONTENT_TYPES = {".json": "application/json", ".onnx": "application/octet-stream"}


def pack_key(family: str, version: str, name: str) -> str:
    return f"models/{family}/{version}/{name}"


def _location(settings: MlopsSettings, bucket: str) -> S3Location:
    return S3Location.from_settings(
        bucket=bucket,
        region=settings.mlops_s3_region,
        endpoint=settings.mlops_s3_endpoint,
        access_key_id=settings.mlops_s3_access_key_id,
        secret_access_key=settings.mlops_s3_secret_access_key,
    )


def pack_store(settings: MlopsSettings) -> ObjectStore:
    return object_store(
        settings.mlops_pack_store,
        directory=settings.pack_dir,
        s3=_location(settings, settings.mlops_s3_bucket),
        key_pattern=PACK_KEY_PATTERN,
    )


class ReadOnlyStore:
    """An object store that can only be read: mlops never changes helper's photos."""

    def __init__(self, inner: ObjectStore) -> None:
        self._inner = inner

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        raise PermissionError("task photos are read only for mlops")

    async def get(self, key: str) -> bytes:
        return await self._inner.get(key)

    async def delete(self, key: str) -> None:
        raise PermissionError("task photos are read only for mlops")

    async def close(self) -> None:
        await self._inner.close()


def photo_store(settings: MlopsSettings) -> ObjectStore:
    inner = object_store(
        settings.mlops_photo_store,
        directory=settings.photo_dir,
        s3=_location(settings, settings.mlops_photo_bucket),
        key_pattern=PHOTO_KEY_PATTERN,
    )
    return ReadOnlyStore(inner)


async def upload_pack(
    store: ObjectStore, *, family: str, version: str, files: Iterable[tuple[str, bytes]]
) -> tuple[PackFile, ...]:
    """Put every file of a pack in the store; returns their descriptions for the registry."""
    described: list[PackFile] = []
    for name, data in files:
        key = pack_key(family, version, name)
        await store.put(key, data, CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream"))
        described.append(PackFile(name=name, key=key, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data)))
    return tuple(described)


async def download_pack(store: ObjectStore, files: Iterable[PackFile], directory: Path) -> Path:
    """Fetch a pack into ``directory``, refusing any file whose digest differs."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    for file in files:
        data = await store.get(file.key)
        if hashlib.sha256(data).hexdigest() != file.sha256:
            raise ValueError(f"{file.name}: digest differs from the registry's")
        await asyncio.to_thread((directory / file.name).write_bytes, data)
    return directory
