"""The kernel's image intake on real files made here by Pillow: formats by content, the
limits and their answers, decompression bombs refused from the header, metadata gone."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from common.images import HEIF_REFUSAL, ImageRefused, decode, encode, sniff, storable
from tests.support.pictures import png_header

GPS_IFD, EXIF_IFD, ORIENTATION, MAKE = 0x8825, 0x8769, 0x0112, 0x010F
LIMITS = {"max_bytes": 4 * 1024 * 1024, "max_pixels": 30_000_000}


def saved(image: Image.Image, kind: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=kind, **options)
    return out.getvalue()


def photo(size: tuple[int, int] = (320, 240), kind: str = "JPEG", **options: object) -> bytes:
    image = Image.new("RGB", size, (30, 90, 160))
    image.paste((250, 200, 20), (0, 0, size[0] // 2, size[1] // 3))
    return saved(image, kind, **options)


def refusal(
    data: bytes,
    *,
    formats: tuple[str, ...] = ("JPEG", "PNG"),
    max_bytes: int = LIMITS["max_bytes"],
    max_pixels: int = LIMITS["max_pixels"],
    min_side: int = 1,
) -> ImageRefused:
    with pytest.raises(ImageRefused) as caught:
        decode(data, formats=formats, max_bytes=max_bytes, max_pixels=max_pixels, min_side=min_side)
    return caught.value


def test_formats_are_read_from_the_content():
    assert sniff(photo()) == "JPEG"
    assert sniff(photo(kind="PNG")) == "PNG"
    assert sniff(photo(kind="WEBP")) == "WEBP"
    assert sniff(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic") == "HEIF"
    assert sniff(photo(kind="GIF")) is None
    assert sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None  # RIFF, but audio

    assert decode(photo(kind="PNG"), formats=("JPEG", "PNG"), **LIMITS).kind == "PNG"
    webp = decode(photo(kind="WEBP"), formats=("JPEG", "PNG", "WEBP"), **LIMITS)
    assert (webp.kind, webp.image.size) == ("WEBP", (320, 240))


def test_a_format_the_caller_does_not_take_is_415_with_what_it_takes():
    for data, formats, reason in [
        (photo(kind="GIF"), ("JPEG", "PNG"), "not a JPEG or PNG image"),
        (photo(kind="WEBP"), ("JPEG", "PNG"), "not a JPEG or PNG image"),
        (b"%PDF-1.7 a document", ("JPEG", "PNG", "WEBP"), "not a JPEG, PNG or WebP image"),
        (photo(kind="PNG"), ("JPEG",), "not a JPEG image"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\0" * 64, ("JPEG", "PNG"), HEIF_REFUSAL),
    ]:
        refused = refusal(data, formats=formats)
        assert (refused.status, refused.reason) == (415, reason)


def test_limits_answer_413_and_empty_or_small_422():
    assert (refusal(b"").status, refusal(b"").reason) == (422, "empty file")

    big = photo()
    over = refusal(big, max_bytes=len(big) - 1)
    assert (over.status, over.reason) == (413, f"photo of {len(big)} bytes exceeds the limit of {len(big) - 1}")

    wide = refusal(photo((400, 300)), max_pixels=400 * 300 - 1)
    assert (wide.status, wide.reason) == (413, "photo of 400x300 pixels is too large")
    assert decode(photo((400, 300)), formats=("JPEG",), max_bytes=10**6, max_pixels=400 * 300).image.size == (400, 300)

    small = refusal(photo((80, 32)), min_side=64)
    assert (small.status, small.reason) == (422, "photo of 80x32 pixels is too small (64 at least)")


def test_a_decompression_bomb_is_refused_from_its_header():
    # Below Pillow's own limit the caller's limit speaks; past it Pillow warns, and past
    # twice it raises: every one is a 413, decided before a pixel is decoded.
    small_header = png_header(20_000, 2_000)
    assert len(small_header) < 200
    refused = refusal(small_header)
    assert (refused.status, refused.reason) == (413, "photo of 20000x2000 pixels is too large")

    limit = Image.MAX_IMAGE_PIXELS or 89_478_485
    for width, height in [(20_000, limit // 20_000 + 1), (60_000, 60_000)]:
        refused = refusal(png_header(width, height), max_pixels=10**12)
        assert (refused.status, refused.reason) == (413, "photo is too large when decoded"), (width, height)


def test_damaged_files_are_422():
    whole = photo((640, 480), quality=95)
    for damaged in [whole[: len(whole) // 2], whole[:200], b"\xff\xd8\xff" + b"\0" * 500, png_header(64, 64)]:
        refused = refusal(damaged)
        assert (refused.status, refused.reason) == (422, "the image cannot be decoded (damaged or truncated)")


def test_metadata_is_read_then_left_behind():
    exif = Image.Exif()
    exif[MAKE] = "SmartGymTestCam"
    exif[ORIENTATION] = 6  # the camera was held sideways: turn 90° clockwise to show
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (37.0, 33.0, 59.0), 3: "E", 4: (126.0, 58.0, 40.0)})
    data = saved(Image.new("RGB", (300, 200), "white"), "JPEG", exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(GPS_IFD)  # the upload has a position

    decoded = decode(data, formats=("JPEG",), **LIMITS)
    assert decoded.exif[MAKE] == "SmartGymTestCam"
    assert decoded.exif.get_ifd(GPS_IFD)[1] == "N"
    assert decoded.image.size == (200, 300)  # upright

    kept = encode(decoded.image, kind="JPEG")
    reopened = Image.open(io.BytesIO(kept))
    assert reopened.size == (200, 300)
    assert not reopened.getexif()
    assert "exif" not in reopened.info
    assert b"SmartGymTestCam" not in kept
    assert b"Exif\x00\x00" not in kept


def test_a_png_keeps_its_alpha_and_a_jpeg_drops_it():
    image = Image.new("RGBA", (120, 90), (200, 10, 10, 0))
    image.paste((10, 200, 10, 255), (0, 0, 60, 90))
    decoded = decode(saved(image, "PNG"), formats=("JPEG", "PNG"), **LIMITS)
    assert decoded.image.mode == "RGBA"

    as_png = Image.open(io.BytesIO(encode(decoded.image, kind="PNG")))
    assert as_png.format == "PNG"
    assert as_png.mode == "RGBA"
    assert as_png.getpixel((10, 10)) == (10, 200, 10, 255)
    assert as_png.getpixel((100, 10))[3] == 0

    as_jpeg = Image.open(io.BytesIO(encode(decoded.image, kind="JPEG")))
    assert (as_jpeg.format, as_jpeg.mode) == ("JPEG", "RGB")
    assert storable(decoded.image, kind="JPEG").mode == "RGB"
    assert storable(decoded.image, kind="PNG") is decoded.image
    assert storable(Image.new("P", (4, 4)), kind="PNG").mode == "RGB"
