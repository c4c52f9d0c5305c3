"""Runners nearby: who else is out running close to me, for those who opted in.

Privacy first: a runner appears only after opting in (and only sees others while they
appear themselves); positions are coarsened to the centre of a ~150 m geohash cell before
they leave the runner's session, so nobody's exact path is shown; inside one of the
runner's privacy zones (home, work) they do not appear at all; an entry vanishes a minute
after its last update.

The index keeps runners by their precision-7 geohash cell (~150 m); a query visits the
cells of the radius's bounding box (a few hundred dictionary lookups for 1 km) and
measures one distance per occupied cell, instead of one per runner in town.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

_BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"
COARSE_PRECISION = 7  # ~153 m x 153 m: what others see of a position
EXPIRE_S = 60.0
MAX_RADIUS_M = 5000.0
MAX_RESULTS = 50


def geohash(lat: float, lon: float, precision: int) -> str:
    lat_range, lon_range = [-90.0, 90.0], [-180.0, 180.0]
    bits, bit, even = 0, 0, True
    out: list[str] = []
    while len(out) < precision:
        span = lon_range if even else lat_range
        value = lon if even else lat
        middle = (span[0] + span[1]) / 2
        if value >= middle:
            bits = bits * 2 + 1
            span[0] = middle
        else:
            bits *= 2
            span[1] = middle
        even = not even
        bit += 1
        if bit == 5:
            out.append(_BASE32[bits])
            bits, bit = 0, 0
    return "".join(out)


def cell_size(precision: int) -> tuple[float, float]:
    """(lat degrees, lon degrees) of one cell."""
    lon_bits = math.ceil(precision * 5 / 2)
    lat_bits = precision * 5 // 2
    return 180.0 / 2**lat_bits, 360.0 / 2**lon_bits


def cell_centre(lat: float, lon: float, precision: int) -> tuple[float, float]:
    dlat, dlon = cell_size(precision)
    return (math.floor((lat + 90) / dlat) + 0.5) * dlat - 90, (math.floor((lon + 180) / dlon) + 0.5) * dlon - 180


def metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi = math.radians((lat1 + lat2) / 2)
    return math.hypot(math.radians(lon2 - lon1) * 6_371_008.8 * math.cos(phi), math.radians(lat2 - lat1) * 6_371_008.8)


@dataclass(frozen=True)
class PrivacyZone:
    lat: float
    lon: float
    radius_m: float

    def covers(self, lat: float, lon: float) -> bool:
        return metres(self.lat, self.lon, lat, lon) <= self.radius_m


def coarsen(lat: float, lon: float, zones: tuple[PrivacyZone, ...]) -> tuple[float, float] | None:
    """What others may see of a position: a cell centre, or nothing inside a privacy zone."""
    if any(zone.covers(lat, lon) for zone in zones):
        return None
    return cell_centre(lat, lon, COARSE_PRECISION)


@dataclass
class _Entry:
    user_id: str
    name: str
    seen: float
    cell: tuple[int, int]


def _cell_of(lat: float, lon: float) -> tuple[int, int]:
    """The precision-7 geohash cell as (row, column): geohash cells are a binary grid, so
    integer indices name the same cells as the strings and cost no encoding."""
    dlat, dlon = cell_size(COARSE_PRECISION)
    return math.floor((lat + 90) / dlat), math.floor((lon + 180) / dlon)


class NearbyIndex:
    """Opted-in runners by the ~150 m cell their coarsened position is the centre of. All
    runners of a cell share its centre, so a query measures one distance per cell: the
    cells of the radius's bounding box, nearest first, until enough runners are found."""

    def __init__(self, *, expire_s: float = EXPIRE_S) -> None:
        self._expire_s = expire_s
        self._entries: dict[str, _Entry] = {}
        self._cells: dict[tuple[int, int], dict[str, _Entry]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def update(self, user_id: str, name: str, lat: float, lon: float, *, now: float | None = None) -> None:
        """A coarsened position (see :func:`coarsen`) of an opted-in runner."""
        seen = time.monotonic() if now is None else now
        cell = _cell_of(lat, lon)
        known = self._entries.get(user_id)
        if known is not None and known.cell != cell:
            self._unlink(known)
        entry = _Entry(user_id, name, seen, cell)
        self._entries[user_id] = entry
        self._cells.setdefault(cell, {})[user_id] = entry

    def remove(self, user_id: str) -> None:
        known = self._entries.pop(user_id, None)
        if known is not None:
            self._unlink(known)

    def _unlink(self, entry: _Entry) -> None:
        members = self._cells.get(entry.cell)
        if members is not None:
            members.pop(entry.user_id, None)
            if not members:
                del self._cells[entry.cell]

    def query(
        self, lat: float, lon: float, radius_m: float, *, exclude: str | None = None, now: float | None = None
    ) -> list[dict[str, Any]]:
        at = time.monotonic() if now is None else now
        radius = min(radius_m, MAX_RADIUS_M)
        dlat, dlon = cell_size(COARSE_PRECISION)
        rows = math.ceil(radius / (dlat * 111_320)) + 1
        cols = math.ceil(radius / (dlon * 111_320 * max(math.cos(math.radians(lat)), 0.01))) + 1
        row0, col0 = _cell_of(lat, lon)
        cells = self._cells
        near = []
        for row in range(row0 - rows, row0 + rows + 1):
            for col in range(col0 - cols, col0 + cols + 1):
                members = cells.get((row, col))
                if members:
                    centre_lat, centre_lon = (row + 0.5) * dlat - 90, (col + 0.5) * dlon - 180
                    distance = metres(lat, lon, centre_lat, centre_lon)
                    if distance <= radius:
                        near.append((distance, centre_lat, centre_lon, members))
        near.sort(key=lambda item: item[0])
        found: list[dict[str, Any]] = []
        stale = []
        for distance, centre_lat, centre_lon, members in near:
            for entry in members.values():
                if at - entry.seen > self._expire_s:
                    stale.append(entry.user_id)
                elif entry.user_id != exclude:
                    found.append({"user_id": entry.user_id, "name": entry.name, "lat": round(centre_lat, 5),
                                  "lon": round(centre_lon, 5), "distance_m": round(distance, -1)})  # fmt: skip
            if len(found) >= MAX_RESULTS:
                break
        for user_id in stale:
            self.remove(user_id)
        return found[:MAX_RESULTS]

    def sweep(self, *, now: float | None = None) -> int:
        at = time.monotonic() if now is None else now
        stale = [user for user, entry in self._entries.items() if at - entry.seen > self._expire_s]
        for user in stale:
            self.remove(user)
        return len(stale)
