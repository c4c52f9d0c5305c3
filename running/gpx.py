"""GPX export and import (gpxpy), so members can take runs to and from other apps.

Import is defensive: the file comes from anywhere. gpxpy parses with lxml or the standard
library and neither refuses a DTD, so every document first goes through defusedxml with
DTDs forbidden (no entity expansion, no external entities); only a document that passes
reaches gpxpy. It must hold at least two track points, each with a valid position and a
time; heart rate and cadence come from Garmin's TrackPointExtension, which most apps
write and which the export writes back. Errors say what is wrong and where.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from xml.etree import ElementTree
from xml.etree.ElementTree import Element, SubElement  # only builds our own extension elements

import gpxpy
import gpxpy.gpx
from pydantic import ValidationError

from running.track import GpsPoint
from running.xmlsafe import XmlRefused, local_name, safe_root

GPX_NS = "http://www.topografix.com/GPX/1/1"
TPX_NS = "http://www.garmin.com/xmlschemas/TrackPointExtension/v1"
MAX_POINTS = 100_000
IMPORTED_ACCURACY_M = 5.0  # GPX carries no accuracy; files from watches are usually this good
_PREFIXES = threading.Lock()


class GpxError(ValueError):
    """The file is not an acceptable GPX track; the message says why."""


def export(points: Sequence[GpsPoint], *, name: str, creator: str = "SmartGym") -> bytes:
    document = gpxpy.gpx.GPX()
    document.creator = creator
    document.name = name
    document.nsmap["gpxtpx"] = TPX_NS
    track = gpxpy.gpx.GPXTrack(name=name)
    document.tracks.append(track)
    segment = gpxpy.gpx.GPXTrackSegment()
    track.segments.append(segment)
    for point in sorted(points, key=lambda item: item.t):
        trkpt = gpxpy.gpx.GPXTrackPoint(
            round(point.lat, 7),
            round(point.lon, 7),
            elevation=round(point.alt, 1) if point.alt is not None else None,
            time=datetime.fromtimestamp(round(point.t, 3), UTC),
        )
        if point.hr is not None or point.cad is not None:
            extension = Element(f"{{{TPX_NS}}}TrackPointExtension")
            if point.hr is not None:
                SubElement(extension, f"{{{TPX_NS}}}hr").text = str(point.hr)
            if point.cad is not None:
                SubElement(extension, f"{{{TPX_NS}}}cad").text = str(point.cad)
            trkpt.extensions.append(extension)
        segment.points.append(trkpt)
    return document.to_xml(version="1.1").encode()


def parse(document: bytes) -> tuple[str, list[GpsPoint]]:
    """The track's name and its points, sorted by time."""
    try:
        root = safe_root(document)
    except XmlRefused as exc:
        raise GpxError(str(exc)) from exc
    if local_name(root.tag) != "gpx":
        raise GpxError(f"not a GPX document (the root element is {local_name(root.tag)!r})")
    return parse_checked(document)


def parse_checked(document: bytes) -> tuple[str, list[GpsPoint]]:
    """Parse a document that already passed the defusedxml gate."""
    try:
        parsed = _parse(document.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise GpxError("the file is not UTF-8") from exc
    except gpxpy.gpx.GPXException as exc:
        raise GpxError(f"not a valid GPX document: {exc}") from exc
    elements = [point for track in parsed.tracks for segment in track.segments for point in segment.points]
    if len(elements) < 2:
        raise GpxError("a track needs at least two trkpt elements")
    if len(elements) > MAX_POINTS:
        raise GpxError(f"too many points ({len(elements)}; at most {MAX_POINTS})")
    name = ((parsed.tracks[0].name if parsed.tracks else None) or parsed.name or "Imported run").strip()[:120]
    points: dict[float, GpsPoint] = {}
    for number, element in enumerate(elements, start=1):
        point = _point(element, number)
        points.setdefault(point.t, point)  # the same instant twice: keep the first
    return name, [points[t] for t in sorted(points)]


def _parse(text: str) -> gpxpy.gpx.GPX:
    """gpxpy registers every namespace prefix of the file in ElementTree's process-wide
    prefix map; uploads with made-up prefixes would grow it without end, so the map is
    put back as it was after each parse."""
    prefixes: dict[str, str] = getattr(ElementTree, "_namespace_map", {})
    with _PREFIXES:
        saved = dict(prefixes)
        try:
            return gpxpy.parse(text)
        finally:
            prefixes.clear()
            prefixes.update(saved)


def _point(element: gpxpy.gpx.GPXTrackPoint, number: int) -> GpsPoint:
    if element.time is None:
        raise GpxError(f"trkpt {number} has no time")
    moment = element.time if element.time.tzinfo is not None else element.time.replace(tzinfo=UTC)
    hr = cad = None
    for extension in element.extensions:
        for child in extension.iter():
            if local_name(child.tag) == "hr" and child.text:
                hr = child.text
            elif local_name(child.tag) in ("cad", "cadence") and child.text:
                cad = child.text
    try:
        return GpsPoint(
            t=moment.timestamp(),
            lat=element.latitude,
            lon=element.longitude,
            acc=IMPORTED_ACCURACY_M,
            alt=element.elevation,
            hr=int(float(hr)) if hr else None,
            cad=int(float(cad)) if cad else None,
        )
    except (ValueError, ValidationError) as exc:
        raise GpxError(f"trkpt {number}: {_reason(exc)}") from exc


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        return f"{'.'.join(str(part) for part in error['loc'])} {error['msg']}"
    return str(exc)
