"""Privacy zones (home, work): no position inside one leaves its runner.

A zone hides every point inside it, wherever the track is seen by somebody else: a
friend's or a link holder's view of a run (REST and live), its GPX export, race boards,
an outing's group positions and runners nearby. A run that starts or ends at home thus
shows neither end: the track appears only from where it leaves the zone. The runner
always sees their own track whole. Summaries (distance, pace, splits) carry no positions
and stay as they are.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from running.models import RunnerProfile
from running.nearby import PrivacyZone
from running.track import GpsPoint

Zones = tuple[PrivacyZone, ...]
T = TypeVar("T", bound=Sequence[float])


async def privacy_zones(session: AsyncSession, *, user: uuid.UUID) -> Zones:
    """The runner's zones, whether or not they opted in to runners nearby."""
    found = await session.get(RunnerProfile, user)
    if found is None:
        return ()
    return tuple(PrivacyZone(zone["lat"], zone["lon"], zone["radius_m"]) for zone in found.privacy_zones or [])


def hides(zones: Zones, lat: float, lon: float) -> bool:
    return any(zone.covers(lat, lon) for zone in zones)


def shown_positions(track: Sequence[T], zones: Zones) -> list[T]:
    """``[t, lat, lon]`` rows outside every zone (all of them when there is none)."""
    if not zones:
        return list(track)
    return [row for row in track if not hides(zones, row[1], row[2])]


def shown_points(points: Sequence[GpsPoint], zones: Zones) -> list[GpsPoint]:
    if not zones:
        return list(points)
    return [point for point in points if not hides(zones, point.lat, point.lon)]
