"""GPX 1.1 export and import, so members can take runs to and from other apps.

Import is defensive: the file comes from anywhere. It is parsed with defusedxml (no
entity expansion, no external entities), must be GPX 1.1 with at least two track
points, and every point needs a valid position and a time; heart rate is read from the
Garmin TrackPointExtension most apps write. Errors say what is wrong and where.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from xml.etree.ElementTree import Element, SubElement, tostring  # only builds our own XML

import defusedxml.ElementTree as SafeTree
from defusedxml import DefusedXmlException
from pydantic import ValidationError

from running.track import GpsPoint

GPX_NS = "http://www.topografix.com/GPX/1/1"
TPX_NS = "http://www.garmin.com/xmlschemas/TrackPointExtension/v1"
MAX_POINTS = 100_000
IMPORTED_ACCURACY_M = 5.0  # GPX carries no accuracy; files from watches are usually this good


class GpxError(ValueError):
    """The file is not an acceptable GPX 1.1 track; the message says why."""


def export(points: Sequence[GpsPoint], *, name: str, creator: str = "SmartGym") -> bytes:
    root = Element("gpx", {"version": "1.1", "creator": creator, "xmlns": GPX_NS, "xmlns:gpxtpx": TPX_NS})
    metadata = SubElement(root, "metadata")
    SubElement(metadata, "name").text = name
    track = SubElement(root, "trk")
    SubElement(track, "name").text = name
    segment = SubElement(track, "trkseg")
    for point in sorted(points, key=lambda item: item.t):
        trkpt = SubElement(segment, "trkpt", {"lat": f"{point.lat:.7f}", "lon": f"{point.lon:.7f}"})
        if point.alt is not None:
            SubElement(trkpt, "ele").text = f"{point.alt:.1f}"
        SubElement(trkpt, "time").text = _iso(point.t)
        if point.hr is not None:
            extensions = SubElement(trkpt, "extensions")
            tpx = SubElement(extensions, "gpxtpx:TrackPointExtension")
            SubElement(tpx, "gpxtpx:hr").text = str(point.hr)
    body: bytes = tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body


def parse(document: bytes) -> tuple[str, list[GpsPoint]]:
    """The track's name and its points, sorted by time."""
    try:
        root = SafeTree.fromstring(document)
    except DefusedXmlException as exc:
        raise GpxError(f"refused XML construct: {type(exc).__name__}") from exc
    except SafeTree.ParseError as exc:
        raise GpxError(f"not well-formed XML: {exc}") from exc
    if root.tag != f"{{{GPX_NS}}}gpx":
        raise GpxError("not a GPX 1.1 document (root must be gpx in the GPX 1.1 namespace)")
    if root.get("version") != "1.1":
        raise GpxError(f"GPX version {root.get('version')!r} is not supported; export as GPX 1.1")
    name = (root.findtext(f"{{{GPX_NS}}}trk/{{{GPX_NS}}}name") or "Imported run").strip()[:120]
    elements = root.findall(f"{{{GPX_NS}}}trk/{{{GPX_NS}}}trkseg/{{{GPX_NS}}}trkpt")
    if len(elements) < 2:
        raise GpxError("a track needs at least two trkpt elements")
    if len(elements) > MAX_POINTS:
        raise GpxError(f"too many points ({len(elements)}; at most {MAX_POINTS})")
    points: dict[float, GpsPoint] = {}
    for number, element in enumerate(elements, start=1):
        point = _point(element, number)
        points.setdefault(point.t, point)  # the same instant twice: keep the first
    return name, [points[t] for t in sorted(points)]


def _point(element: Element, number: int) -> GpsPoint:
    time_text = element.findtext(f"{{{GPX_NS}}}time")
    if not time_text:
        raise GpxError(f"trkpt {number} has no time")
    try:
        moment = datetime.fromisoformat(time_text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise GpxError(f"trkpt {number}: time {time_text!r} is not ISO 8601") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    hr_text = element.findtext(f"{{{GPX_NS}}}extensions/{{{TPX_NS}}}TrackPointExtension/{{{TPX_NS}}}hr")
    elevation = element.findtext(f"{{{GPX_NS}}}ele")
    try:
        return GpsPoint(
            t=moment.timestamp(),
            lat=float(element.get("lat", "nan")),
            lon=float(element.get("lon", "nan")),
            acc=IMPORTED_ACCURACY_M,
            alt=float(elevation) if elevation else None,
            hr=int(float(hr_text)) if hr_text else None,
        )
    except (ValueError, ValidationError) as exc:
        raise GpxError(f"trkpt {number}: {_reason(exc)}") from exc


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        return f"{'.'.join(str(part) for part in error['loc'])} {error['msg']}"
    return str(exc)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
