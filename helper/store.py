"""Where task photos are kept: one interface, a directory in embedded mode, S3 in
production. Events and the database hold keys only; bytes live here."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from helper.settings import HelperSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}/[0-9a-f-]{36}/[0-9]\.(jpg|png)$")


class PhotoNotFound(KeyError):
    pass


class PhotoStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> bytes: ...

    async def close(self) -> None: ...


def _checked(key: str) -> str:
    # Keys are made by helper itself; refusing anything else keeps a bad key from
    # walking out of the photo directory.
    if not KEY_PATTERN.match(key):
        raise PhotoNotFound(key)
    return key


class DirectoryStore:
    def __init__(self, root: Path) -> None:
        self._root = root

    def _write(self, key: str, data: bytes) -> None:
        path = self._root / _checked(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(path.suffix + ".tmp")
        staging.write_bytes(data)
        staging.replace(path)

    def _read(self, key: str) -> bytes:
        path = self._root / _checked(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise PhotoNotFound(key) from exc

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._write, key, data)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._read, key)

    async def close(self) -> None:
        return None


class S3Store:
    """boto3 is synchronous: every call runs in a worker thread."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    @classmethod
    def from_settings(cls, settings: HelperSettings) -> S3Store:
        import boto3
        from botocore.config import Config

        options: dict[str, Any] = {
            "region_name": settings.helper_s3_region,
            "config": Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=15),
        }
        if settings.helper_s3_endpoint:
            options["endpoint_url"] = settings.helper_s3_endpoint
        if settings.helper_s3_access_key_id and settings.helper_s3_secret_access_key:
            options["aws_access_key_id"] = settings.helper_s3_access_key_id.get_secret_value()
            options["aws_secret_access_key"] = settings.helper_s3_secret_access_key.get_secret_value()
        return cls(boto3.client("s3", **options), settings.helper_s3_bucket)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(
            self._client.put_object, Bucket=self._bucket, Key=_checked(key), Body=data, ContentType=content_type
        )

    async def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        def read() -> bytes:
            try:
                body = self._client.get_object(Bucket=self._bucket, Key=_checked(key))["Body"]
                return body.read()
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    raise PhotoNotFound(key) from exc
                raise

        return await asyncio.to_thread(read)

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)


def photo_store(settings: HelperSettings) -> PhotoStore:
    if settings.helper_photo_store == "s3":
        return S3Store.from_settings(settings)
    return DirectoryStore(settings.photo_dir)
