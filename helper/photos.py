"""Intake of one task photo: what it is, when it was taken, and a clean copy to keep.

Only JPEG and PNG are accepted (the apps can always produce them; HEIC would need a
patent-encumbered decoder on the server). The stored copy is re-encoded from the pixels,
so no EXIF (GPS position, device serial) survives; the capture time is read first and
kept beside it, because the judge uses it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo

import imagehash
from PIL import Image

from common.images import ImageRefused, decode, encode, storable

FORMATS = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png")}
EXIF_IFD = 0x8769
DATETIME_ORIGINAL, OFFSET_TIME_ORIGINAL, DATETIME = 0x9003, 0x9011, 0x0132

# The kernel's refusal (``reason`` for the helper's app to show, ``status`` the HTTP answer).
PhotoRefused = ImageRefused


@dataclass(frozen=True)
class CleanPhoto:
    data: bytes
    content_type: str
    extension: str
    sha256: str
    width: int
    height: int
    captured_at: datetime | None
    phash: int  # 64-bit perceptual hash as a signed integer (fits BIGINT)


def clean(data: bytes, *, max_bytes: int, max_pixels: int, local_tz: tzinfo | None = None) -> CleanPhoto:
    """Validate, read the capture time, strip metadata and hash one uploaded photo."""
    decoded = decode(data, formats=FORMATS, max_bytes=max_bytes, max_pixels=max_pixels)
    captured_at = _capture_time(decoded.exif, local_tz or UTC)
    content_type, extension = FORMATS[decoded.kind]
    pixels = storable(decoded.image, kind=decoded.kind)
    clean_bytes = encode(pixels, kind=decoded.kind, quality=90)
    return CleanPhoto(
        data=clean_bytes,
        content_type=content_type,
        extension=extension,
        sha256=hashlib.sha256(clean_bytes).hexdigest(),
        width=pixels.width,
        height=pixels.height,
        captured_at=captured_at,
        phash=phash_of(pixels),
    )


def phash_of(image: Image.Image) -> int:
    bits = int(str(imagehash.phash(image)), 16)
    return bits - (1 << 64) if bits >= 1 << 63 else bits


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & 0xFFFF_FFFF_FFFF_FFFF).bit_count()


def _capture_time(exif: Image.Exif, local_tz: tzinfo) -> datetime | None:
    """DateTimeOriginal (with its offset when the camera wrote one), else DateTime."""
    if not exif:
        return None
    details = exif.get_ifd(EXIF_IFD)
    text = details.get(DATETIME_ORIGINAL) or exif.get(DATETIME)
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.strptime(text.strip("\x00 "), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None  # a camera's garbage is no capture time, not a refusal
    offset = details.get(OFFSET_TIME_ORIGINAL)
    tz: tzinfo = local_tz
    if isinstance(offset, str) and len(offset) == 6 and offset[0] in "+-":
        try:
            hours, minutes = int(offset[1:3]), int(offset[4:6])
            sign = 1 if offset[0] == "+" else -1
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        except ValueError:
            pass
    return moment.replace(tzinfo=tz).astimezone(UTC)
