"""Intake of one task photo: what it is, when it was taken, and a clean copy to keep.

Only JPEG and PNG are accepted (the apps can always produce them; HEIC would need a
patent-encumbered decoder on the server). The stored copy is re-encoded from the pixels,
so no EXIF (GPS position, device serial) survives; the capture time is read first and
kept beside it, because the judge uses it.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo

import imagehash
from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png")}
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"heim", b"heis")
EXIF_IFD = 0x8769
DATETIME_ORIGINAL, OFFSET_TIME_ORIGINAL, DATETIME = 0x9003, 0x9011, 0x0132


class PhotoRefused(ValueError):
    """The upload is not a photo we keep; ``reason`` is for the helper's app to show."""

    def __init__(self, reason: str, *, status: int = 422) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status  # 413 too large, 415 wrong format, 422 otherwise


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


def sniff(data: bytes) -> str | None:
    """The container format by its magic bytes: "JPEG", "PNG", "HEIF" or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:
        return "HEIF"
    return None


def clean(data: bytes, *, max_bytes: int, max_pixels: int, local_tz: tzinfo | None = None) -> CleanPhoto:
    """Validate, read the capture time, strip metadata and hash one uploaded photo."""
    if not data:
        raise PhotoRefused("empty file")
    if len(data) > max_bytes:
        raise PhotoRefused(f"photo of {len(data)} bytes exceeds the limit of {max_bytes}", status=413)
    kind = sniff(data)
    if kind == "HEIF":
        raise PhotoRefused("HEIC/HEIF photos are not accepted: set the camera to 'most compatible' (JPEG)", status=415)
    if kind is None:
        raise PhotoRefused("not a JPEG or PNG image", status=415)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            if opened.format != kind:
                raise PhotoRefused("the file's content does not match its format")
            if opened.width * opened.height > max_pixels:
                raise PhotoRefused(f"photo of {opened.width}x{opened.height} pixels is too large", status=413)
            captured_at = _capture_time(opened, local_tz or UTC)
            image = ImageOps.exif_transpose(opened)  # keep what the camera meant as "up"
            image.load()
    except PhotoRefused:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise PhotoRefused(f"the image cannot be decoded: {type(exc).__name__}") from exc
    except Image.DecompressionBombWarning as exc:
        raise PhotoRefused("photo is too large when decoded", status=413) from exc
    content_type, extension = FORMATS[kind]
    pixels = image.convert("RGB") if kind == "JPEG" or image.mode not in ("RGB", "RGBA", "L") else image
    out = io.BytesIO()
    if kind == "JPEG":
        pixels.save(out, format="JPEG", quality=90)
    else:
        pixels.save(out, format="PNG", optimize=False)
    clean_bytes = out.getvalue()
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


def _capture_time(image: Image.Image, local_tz: tzinfo) -> datetime | None:
    """DateTimeOriginal (with its offset when the camera wrote one), else DateTime."""
    exif = image.getexif()
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
