"""FIT (the binary format of Garmin and most watches): import with fitdecode (CRC checked),
and a small writer of our own for export, so a run round-trips. Positions are semicircles
(2^31 per 180 degrees), times whole seconds since 1989-12-31 UTC."""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from datetime import UTC, datetime

import fitdecode
from pydantic import ValidationError

from running.track import GpsPoint

FIT_EPOCH = 631_065_600  # 1989-12-31T00:00:00Z as Unix seconds
SEMICIRCLE = 2**31 / 180.0
MAX_POINTS = 100_000
IMPORTED_ACCURACY_M = 5.0
_CRC_TABLE = (
    0x0000, 0xCC01, 0xD801, 0x1400, 0xF001, 0x3C00, 0x2800, 0xE401,
    0xA001, 0x6C00, 0x7800, 0xB401, 0x5000, 0x9C01, 0x8801, 0x4400,
)  # fmt: skip
# (field number, size, base type) of the two messages we write.
_FILE_ID = ((0, 1, 0x00), (1, 2, 0x84), (4, 4, 0x86))  # type, manufacturer, time_created
_RECORD = ((253, 4, 0x86), (0, 4, 0x85), (1, 4, 0x85), (78, 4, 0x86), (3, 1, 0x02), (4, 1, 0x02))


class FitError(ValueError):
    pass


def is_fit(document: bytes) -> bool:
    return len(document) >= 12 and document[8:12] == b".FIT"


def _crc(data: bytes, crc: int = 0) -> int:
    for byte in data:
        for nibble in (byte & 0xF, byte >> 4):
            tmp = _CRC_TABLE[crc & 0xF]
            crc = ((crc >> 4) & 0x0FFF) ^ tmp ^ _CRC_TABLE[nibble]
    return crc


def _definition(local: int, global_number: int, fields: tuple[tuple[int, int, int], ...]) -> bytes:
    head = struct.pack("<BBBHB", 0x40 | local, 0, 0, global_number, len(fields))
    return head + b"".join(struct.pack("<BBB", *field) for field in fields)


def export(points: Sequence[GpsPoint]) -> bytes:
    ordered = sorted(points, key=lambda point: point.t)
    body = bytearray()
    created = int(ordered[0].t) - FIT_EPOCH if ordered else 0
    body += _definition(0, 0, _FILE_ID) + struct.pack("<BBHI", 0, 4, 255, created)  # an activity file
    body += _definition(1, 20, _RECORD)
    for point in ordered:
        altitude = round((point.alt + 500) * 5) if point.alt is not None else 0xFFFFFFFF
        body += struct.pack(
            "<BIiiIBB",
            1,
            round(point.t) - FIT_EPOCH,
            round(point.lat * SEMICIRCLE),
            round(point.lon * SEMICIRCLE),
            altitude,
            point.hr if point.hr is not None else 0xFF,
            min(point.cad, 254) if point.cad is not None else 0xFF,
        )
    header = struct.pack("<BBHI4s", 14, 0x20, 2132, len(body), b".FIT")
    header += struct.pack("<H", _crc(header))
    content = header + bytes(body)
    return content + struct.pack("<H", _crc(content))


def parse(document: bytes) -> tuple[str, list[GpsPoint]]:
    points: dict[float, GpsPoint] = {}
    number = 0
    try:
        with fitdecode.FitReader(io.BytesIO(document), check_crc=fitdecode.CrcCheck.RAISE) as reader:
            for frame in reader:
                if not isinstance(frame, fitdecode.FitDataMessage) or frame.name != "record":
                    continue
                number += 1
                if number > MAX_POINTS:
                    raise FitError(f"too many records (at most {MAX_POINTS})")
                point = _point(frame, number)
                if point is not None:
                    points.setdefault(point.t, point)
    except fitdecode.FitError as exc:
        raise FitError(f"invalid FIT: {exc}") from exc
    if len(points) < 2:
        raise FitError("a FIT activity needs at least two records with a position")
    return "Imported run", [points[t] for t in sorted(points)]


def _value(frame: fitdecode.FitDataMessage, *names: str) -> object | None:
    for name in names:
        if frame.has_field(name):
            value: object = frame.get_value(name)
            if value is not None:
                return value
    return None


def _point(frame: fitdecode.FitDataMessage, number: int) -> GpsPoint | None:
    lat, lon = _value(frame, "position_lat"), _value(frame, "position_long")
    moment = _value(frame, "timestamp")
    if lat is None or lon is None:
        return None  # a record without a fix (indoors, before the first fix)
    if not isinstance(moment, datetime):
        raise FitError(f"record {number} has no timestamp")
    altitude, hr, cadence = (
        _value(frame, "enhanced_altitude", "altitude"),
        _value(frame, "heart_rate"),
        _value(frame, "cadence"),
    )
    try:
        return GpsPoint(
            t=(moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp(),
            lat=float(lat) / SEMICIRCLE,  # type: ignore[arg-type]
            lon=float(lon) / SEMICIRCLE,  # type: ignore[arg-type]
            acc=IMPORTED_ACCURACY_M,
            alt=float(altitude) if isinstance(altitude, int | float) else None,
            hr=int(hr) if isinstance(hr, int | float) else None,
            cad=int(cadence) if isinstance(cadence, int | float) else None,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        raise FitError(f"record {number}: {'.'.join(str(p) for p in error['loc'])} {error['msg']}") from exc
