"""Checking an uploaded image before a service keeps it, and a clean copy to keep.

The format is read from the content, never from the declared type or the name: a client
that lies about one is answered by what it sent. The limits are the caller's (a service's
settings); what this module decides is the order of the checks and their answers: 415 for
a format the caller does not take, 413 for too many bytes or pixels, 422 for anything
empty, undecodable or too small. Pixels are counted from the header before anything is
decoded, so a few kilobytes that claim a gigapixel cost nothing.

The copy to keep is re-encoded from the pixels, so no EXIF (GPS position, device serial)
survives; a caller that needs something from the metadata reads it from ``Decoded.exif``
first.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Collection
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

# What a refusal calls each format, in the order a list of them is written.
NAMES = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP"}
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"heim", b"heis")
# HEIC is what a phone's camera writes by default; its decoder is patent-encumbered, so
# the refusal says how to get a JPEG instead of only that this is not one.
HEIF_REFUSAL = "HEIC/HEIF photos are not accepted: set the camera to 'most compatible' (JPEG)"


class ImageRefused(ValueError):
    """Not an image the caller keeps; ``reason`` is for the client to show, ``status`` is
    the HTTP answer (413 too large, 415 wrong format, 422 otherwise)."""

    def __init__(self, reason: str, *, status: int = 422) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Decoded:
    kind: str  # "JPEG", "PNG" or "WEBP": what the content is
    image: Image.Image  # decoded, turned the way the camera meant as "up"
    exif: Image.Exif  # the upload's metadata, which the kept copy will not carry


def sniff(data: bytes) -> str | None:
    """The container format by its magic bytes: "JPEG", "PNG", "WEBP", "HEIF" or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WEBP"
    if len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:
        return "HEIF"
    return None


def decode(data: bytes, *, formats: Collection[str], max_bytes: int, max_pixels: int, min_side: int = 1) -> Decoded:
    """Check one upload (format by content, bytes, pixels, smallest side, that it decodes)
    and decode it; ``formats`` are the kinds of ``NAMES`` the caller takes."""
    if not data:
        raise ImageRefused("empty file")
    if len(data) > max_bytes:
        raise ImageRefused(f"photo of {len(data)} bytes exceeds the limit of {max_bytes}", status=413)
    kind = sniff(data)
    if kind == "HEIF" and kind not in formats:
        raise ImageRefused(HEIF_REFUSAL, status=415)
    if kind is None or kind not in formats:
        raise ImageRefused(f"not a {_listed(formats)} image", status=415)
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its own limit and twice it; past twice it raises.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            if opened.format != kind:
                raise ImageRefused("the file's content does not match its format")
            if opened.width * opened.height > max_pixels:
                raise ImageRefused(f"photo of {opened.width}x{opened.height} pixels is too large", status=413)
            if min(opened.width, opened.height) < min_side:
                raise ImageRefused(f"photo of {opened.width}x{opened.height} pixels is too small ({min_side} at least)")
            exif = opened.getexif()
            image = ImageOps.exif_transpose(opened)
            image.load()
    except ImageRefused:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageRefused("photo is too large when decoded", status=413) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageRefused("the image cannot be decoded (damaged or truncated)") from exc
    return Decoded(kind=kind, image=image, exif=exif)


def storable(image: Image.Image, *, kind: str) -> Image.Image:
    """The pixels as ``kind`` can hold them: JPEG has no alpha, and palettes and odd modes
    become RGB."""
    if kind == "JPEG" or image.mode not in ("RGB", "RGBA", "L"):
        return image.convert("RGB")
    return image


def encode(image: Image.Image, *, kind: str, quality: int = 90, optimize: bool = False) -> bytes:
    """Fresh ``kind`` bytes from the pixels alone, so none of the upload's metadata
    (EXIF, XMP, comments) is kept."""
    pixels = storable(image, kind=kind)
    out = io.BytesIO()
    if kind == "JPEG":
        pixels.save(out, format="JPEG", quality=quality, optimize=optimize)
    else:
        pixels.save(out, format=kind, optimize=optimize)
    return out.getvalue()


def _listed(formats: Collection[str]) -> str:
    names = [name for kind, name in NAMES.items() if kind in formats]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
