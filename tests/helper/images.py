"""Photos made for the judge's checks: distinct scenes, and the same scene blurred,
darkened, re-encoded or stamped with an old capture time."""

from __future__ import annotations

import io
from datetime import datetime

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

EXIF_IFD, DATETIME_ORIGINAL, DATETIME = 0x8769, 0x9003, 0x0132


def scene(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A busy, sharp picture that differs from every other seed's."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(90, 170, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x0, y0 = int(rng.integers(0, size[0])), int(rng.integers(0, size[1]))
        x1, y1 = x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 200))
        colour = tuple(int(v) for v in rng.integers(40, 255, 3))
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
    texture = rng.integers(-25, 25, (size[1], size[0], 3))
    pixels = np.clip(np.asarray(image, dtype=np.int16) + texture, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def blurred(image: Image.Image) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(6))


def darkened(image: Image.Image, factor: float = 0.12) -> Image.Image:
    return Image.fromarray((np.asarray(image, dtype=np.float32) * factor).astype(np.uint8))


def jpeg(image: Image.Image, *, quality: int = 90, taken_at: datetime | None = None, original: bool = True) -> bytes:
    out = io.BytesIO()
    exif = Image.Exif()
    if taken_at is not None:
        stamp = taken_at.strftime("%Y:%m:%d %H:%M:%S")
        if original:
            exif.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] = stamp
        else:
            exif[DATETIME] = stamp
        exif[0x010F] = "SmartGymTestCam"  # Make: must not survive intake
    image.save(out, format="JPEG", quality=quality, exif=exif.tobytes() if taken_at else b"")
    return out.getvalue()


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
