"""TCX (Garmin Training Center) export and import. The document passes the defusedxml
gate first (running.xmlsafe); heart rate is ``HeartRateBpm/Value``, cadence ``Cadence`` or
the ``TPX/RunCadence`` extension that running watches write."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from xml.etree.ElementTree import Element, SubElement, tostring  # only builds our own XML

from pydantic import ValidationError

from running.track import GpsPoint
from running.xmlsafe import XmlRefused, local_name, safe_root

TCX_NS = "http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2"
AX_NS = "http://www.garmin.com/xmlschemas/ActivityExtension/v2"
MAX_POINTS = 100_000
IMPORTED_ACCURACY_M = 5.0


class TcxError(ValueError):
    pass


def export(points: Sequence[GpsPoint], *, name: str) -> bytes:
    ordered = sorted(points, key=lambda point: point.t)
    root = Element("TrainingCenterDatabase", {"xmlns": TCX_NS, "xmlns:ns3": AX_NS})
    activity = SubElement(SubElement(root, "Activities"), "Activity", {"Sport": "Running"})
    SubElement(activity, "Id").text = _iso(ordered[0].t) if ordered else _iso(0)
    lap = SubElement(activity, "Lap", {"StartTime": _iso(ordered[0].t) if ordered else _iso(0)})
    SubElement(lap, "TotalTimeSeconds").text = f"{ordered[-1].t - ordered[0].t:.1f}" if ordered else "0"
    track = SubElement(lap, "Track")
    for point in ordered:
        trackpoint = SubElement(track, "Trackpoint")
        SubElement(trackpoint, "Time").text = _iso(point.t)
        position = SubElement(trackpoint, "Position")
        SubElement(position, "LatitudeDegrees").text = f"{point.lat:.7f}"
        SubElement(position, "LongitudeDegrees").text = f"{point.lon:.7f}"
        if point.alt is not None:
            SubElement(trackpoint, "AltitudeMeters").text = f"{point.alt:.1f}"
        if point.hr is not None:
            SubElement(SubElement(trackpoint, "HeartRateBpm"), "Value").text = str(point.hr)
        if point.cad is not None:
            tpx = SubElement(SubElement(trackpoint, "Extensions"), "ns3:TPX")
            SubElement(tpx, "ns3:RunCadence").text = str(point.cad)
    SubElement(activity, "Notes").text = name
    body: bytes = tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body


def parse(document: bytes) -> tuple[str, list[GpsPoint]]:
    try:
        root = safe_root(document)
    except XmlRefused as exc:
        raise TcxError(str(exc)) from exc
    return parse_root(root)


def parse_root(root: Element) -> tuple[str, list[GpsPoint]]:
    if root.tag != f"{{{TCX_NS}}}TrainingCenterDatabase":
        raise TcxError("not a TCX v2 document")
    trackpoints = root.findall(f".//{{{TCX_NS}}}Trackpoint")
    with_position = [tp for tp in trackpoints if tp.find(f"{{{TCX_NS}}}Position") is not None]
    if len(with_position) < 2:
        raise TcxError("a track needs at least two Trackpoints with a Position")
    if len(with_position) > MAX_POINTS:
        raise TcxError(f"too many points ({len(with_position)}; at most {MAX_POINTS})")
    notes = root.findtext(f".//{{{TCX_NS}}}Activity/{{{TCX_NS}}}Notes")
    points: dict[float, GpsPoint] = {}
    for number, element in enumerate(with_position, start=1):
        point = _point(element, number)
        points.setdefault(point.t, point)
    return (notes or "Imported run").strip()[:120], [points[t] for t in sorted(points)]


def _point(element: Element, number: int) -> GpsPoint:
    def text(path: str) -> str | None:
        found = element.findtext(path)
        return found.strip() if found else None

    moment_text = text(f"{{{TCX_NS}}}Time")
    if not moment_text:
        raise TcxError(f"Trackpoint {number} has no Time")
    cadence = text(f"{{{TCX_NS}}}Cadence")
    if cadence is None:
        for child in element.iter():
            if local_name(child.tag) == "RunCadence" and child.text:
                cadence = child.text.strip()
    altitude = text(f"{{{TCX_NS}}}AltitudeMeters")
    hr = text(f"{{{TCX_NS}}}HeartRateBpm/{{{TCX_NS}}}Value")
    try:
        moment = datetime.fromisoformat(moment_text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return GpsPoint(
            t=moment.timestamp(),
            lat=float(text(f"{{{TCX_NS}}}Position/{{{TCX_NS}}}LatitudeDegrees") or "nan"),
            lon=float(text(f"{{{TCX_NS}}}Position/{{{TCX_NS}}}LongitudeDegrees") or "nan"),
            acc=IMPORTED_ACCURACY_M,
            alt=float(altitude) if altitude else None,
            hr=int(float(hr)) if hr else None,
            cad=int(float(cadence)) if cadence else None,
        )
    except (ValueError, ValidationError) as exc:
        raise TcxError(f"Trackpoint {number}: {_reason(exc)}") from exc


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        return f"{'.'.join(str(part) for part in error['loc'])} {error['msg']}"
    return str(exc)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
