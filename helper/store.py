"""Where task photos are kept: the kernel's object store, with helper's own keys
(``<branch>/<task id>/<n>.jpg|png``) and its own bucket settings."""

from __future__ import annotations

import re

from common.objectstore import ObjectNotFound, ObjectStore, S3Location, object_store
from helper.settings import HelperSettings

KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}/[0-9a-f-]{36}/[0-9]\.(jpg|png)$")

PhotoNotFound = ObjectNotFound
PhotoStore = ObjectStore


def photo_store(settings: HelperSettings) -> PhotoStore:
    location = S3Location.from_settings(
        bucket=settings.helper_s3_bucket,
        region=settings.helper_s3_region,
        endpoint=settings.helper_s3_endpoint,
        access_key_id=settings.helper_s3_access_key_id,
        secret_access_key=settings.helper_s3_secret_access_key,
    )
    return object_store(settings.helper_photo_store, directory=settings.photo_dir, s3=location, key_pattern=KEY_PATTERN)
