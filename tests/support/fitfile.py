"""A minimal FIT writer for tests, written from the FIT protocol rather than from running's
own exporter, so an import test does not only read back what our code wrote: a watch's
layout (file_id with a serial number, a timer-start event, records carrying distance and
speed, one record before the first fix with the invalid-position sentinel, a session
summary), little-endian, protocol 2.0, CRC over header and file."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

FIT_EPOCH = 631_065_600  # 1989-12-31T00:00:00Z in Unix seconds
SEMICIRCLES = 2**31 / 180.0
INVALID_SINT32 = 0x7FFFFFFF

# Base types (FIT profile): the type byte a field definition carries.
ENUM, UINT8, UINT16, SINT32, UINT32, UINT32Z = 0x00, 0x02, 0x84, 0x85, 0x86, 0x8C
_PACK = {ENUM: "B", UINT8: "B", UINT16: "H", SINT32: "i", UINT32: "I", UINT32Z: "I"}
_SIZE = {"B": 1, "H": 2, "i": 4, "I": 4}


@dataclass(frozen=True)
class Sample:
    t: float  # Unix seconds
    lat: float | None  # None: no fix yet
    lon: float | None
    alt_m: float
    hr: int
    distance_m: float
    speed_mps: float


def _crc16(data: bytes, crc: int = 0) -> int:
    # The FIT CRC: CRC-16 with polynomial 0xA001, computed four bits at a time.
    table = [0x0000, 0xCC01, 0xD801, 0x1400, 0xF001, 0x3C00, 0x2800, 0xE401,
             0xA001, 0x6C00, 0x7800, 0xB401, 0x5000, 0x9C01, 0x8801, 0x4400]  # fmt: skip
    for byte in data:
        tmp = table[crc & 0xF]
        crc = ((crc >> 4) & 0x0FFF) ^ tmp ^ table[byte & 0xF]
        tmp = table[crc & 0xF]
        crc = ((crc >> 4) & 0x0FFF) ^ tmp ^ table[(byte >> 4) & 0xF]
    return crc


class _Writer:
    def __init__(self) -> None:
        self.body = bytearray()
        self.layouts: dict[int, tuple[tuple[int, int], ...]] = {}

    def define(self, local: int, global_number: int, fields: tuple[tuple[int, int], ...]) -> None:
        """fields: (field number, base type) in the order values are written."""
        self.layouts[local] = fields
        self.body += struct.pack("<BBBHB", 0x40 | local, 0, 0, global_number, len(fields))
        for number, base in fields:
            self.body += struct.pack("<BBB", number, _SIZE[_PACK[base]], base)

    def data(self, local: int, *values: int) -> None:
        fields = self.layouts[local]
        assert len(values) == len(fields)
        self.body += struct.pack("<B" + "".join(_PACK[base] for _, base in fields), local, *values)

    def finish(self) -> bytes:
        header = struct.pack("<BBHI4s", 14, 0x20, 2193, len(self.body), b".FIT")
        header += struct.pack("<H", _crc16(header))
        content = header + bytes(self.body)
        return content + struct.pack("<H", _crc16(content))


def activity(samples: Sequence[Sample], *, serial: int = 3_901_234_567) -> bytes:
    """A running activity as a watch records it."""
    first, last = samples[0], samples[-1]
    fit = _Writer()
    # file_id: type (4 = activity), manufacturer (1 = Garmin), product, serial, time_created
    fit.define(0, 0, ((0, ENUM), (1, UINT16), (2, UINT16), (3, UINT32Z), (4, UINT32)))
    fit.data(0, 4, 1, 3113, serial, round(first.t) - FIT_EPOCH)
    # event: timestamp, event (0 = timer), event_type (0 = start)
    fit.define(1, 21, ((253, UINT32), (0, ENUM), (1, ENUM)))
    fit.data(1, round(first.t) - FIT_EPOCH, 0, 0)
    # record: timestamp, lat, long, distance (cm), enhanced_altitude (m*5+500), heart rate, speed (mm/s)
    fit.define(2, 20, ((253, UINT32), (0, SINT32), (1, SINT32), (5, UINT32), (78, UINT32), (3, UINT8), (6, UINT16)))
    for sample in samples:
        lat = INVALID_SINT32 if sample.lat is None else round(sample.lat * SEMICIRCLES)
        lon = INVALID_SINT32 if sample.lon is None else round(sample.lon * SEMICIRCLES)
        fit.data(
            2,
            round(sample.t) - FIT_EPOCH,
            lat,
            lon,
            round(sample.distance_m * 100),
            round((sample.alt_m + 500) * 5),
            sample.hr,
            round(sample.speed_mps * 1000),
        )
    # session: timestamp, start_time, sport (1 = running), total_elapsed_time (ms), total_distance (cm)
    fit.define(3, 18, ((253, UINT32), (2, UINT32), (5, ENUM), (7, UINT32), (9, UINT32)))
    fit.data(
        3,
        round(last.t) - FIT_EPOCH,
        round(first.t) - FIT_EPOCH,
        1,
        round((last.t - first.t) * 1000),
        round(last.distance_m * 100),
    )
    return fit.finish()
