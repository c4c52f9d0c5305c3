"""Where blobs are kept (task photos, model packs): one interface, a directory in
embedded mode, S3 in production. Events and databases hold keys only; bytes live here.

Each user of a store says which keys it makes (``key_pattern``): anything else is refused
before it reaches the disk or the bucket, so a bad key cannot walk out of its directory.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import SecretStr

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class ObjectNotFound(KeyError):
    pass


class ObjectStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None:
        """Remove the object; a key that is not there is not an error (deletes are retried)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class S3Location:
    """Where an S3 (or S3-compatible) bucket is, and the credentials to reach it."""

    bucket: str
    region: str
    endpoint: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None

    @classmethod
    def from_settings(
        cls,
        *,
        bucket: str,
        region: str,
        endpoint: str | None,
        access_key_id: SecretStr | None,
        secret_access_key: SecretStr | None,
    ) -> S3Location:
        """From a service's settings, which hold the credentials as secrets (unset: the
        pod's role or the default credential chain)."""
        return cls(
            bucket=bucket,
            region=region,
            endpoint=endpoint,
            access_key_id=access_key_id.get_secret_value() if access_key_id else None,
            secret_access_key=secret_access_key.get_secret_value() if secret_access_key else None,
        )


class _KeyChecked:
    def __init__(self, key_pattern: re.Pattern[str]) -> None:
        self._key_pattern = key_pattern

    def _checked(self, key: str) -> str:
        if not self._key_pattern.match(key):
            raise ObjectNotFound(key)
        return key


class DirectoryStore(_KeyChecked):
    def __init__(self, root: Path, *, key_pattern: re.Pattern[str]) -> None:
        super().__init__(key_pattern)
        self._root = root

    def _write(self, key: str, data: bytes) -> None:
        path = self._root / self._checked(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(path.suffix + ".tmp")
        staging.write_bytes(data)
        staging.replace(path)

    def _read(self, key: str) -> bytes:
        path = self._root / self._checked(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._write, key, data)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._read, key)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread((self._root / self._checked(key)).unlink, missing_ok=True)

    async def close(self) -> None:
        return None


class S3Store(_KeyChecked):
    """boto3 is synchronous: every call runs in a worker thread."""

    def __init__(self, client: S3Client, bucket: str, *, key_pattern: re.Pattern[str]) -> None:
        super().__init__(key_pattern)
        self._client = client
        self._bucket = bucket

    @classmethod
    def at(cls, location: S3Location, *, key_pattern: re.Pattern[str]) -> S3Store:
        import boto3
        from botocore.config import Config

        options: dict[str, Any] = {
            "region_name": location.region,
            "config": Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=15),
        }
        if location.endpoint:
            options["endpoint_url"] = location.endpoint
        if location.access_key_id and location.secret_access_key:
            options["aws_access_key_id"] = location.access_key_id
            options["aws_secret_access_key"] = location.secret_access_key
        return cls(boto3.client("s3", **options), location.bucket, key_pattern=key_pattern)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(
            self._client.put_object, Bucket=self._bucket, Key=self._checked(key), Body=data, ContentType=content_type
        )

    async def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        def read() -> bytes:
            try:
                body = self._client.get_object(Bucket=self._bucket, Key=self._checked(key))["Body"]
                return body.read()
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    raise ObjectNotFound(key) from exc
                raise

        return await asyncio.to_thread(read)

    async def delete(self, key: str) -> None:
        # S3 answers 204 for a missing key too.
        await asyncio.to_thread(self._client.delete_object, Bucket=self._bucket, Key=self._checked(key))

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)


def object_store(
    kind: Literal["directory", "s3"], *, directory: Path, s3: S3Location, key_pattern: re.Pattern[str]
) -> ObjectStore:
    if kind == "s3":
        return S3Store.at(s3, key_pattern=key_pattern)
    return DirectoryStore(directory, key_pattern=key_pattern)
