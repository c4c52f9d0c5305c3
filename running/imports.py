"""Files members bring from other apps and watches, told apart by their content: FIT
(binary, ``.FIT`` in its header), GPX (XML, root ``gpx``) and TCX (XML, root
``TrainingCenterDatabase``). XML goes through the defusedxml gate before any parser."""

from __future__ import annotations

from dataclasses import dataclass

from running import fit, gpx, tcx
from running.track import GpsPoint
from running.xmlsafe import XmlRefused, local_name, safe_root


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
        if fit.is_fit(document):
            name, points = fit.parse(document)
            return ParsedRun(name, points, "fit")
        root = safe_root(document)
        kind = local_name(root.tag)
        if kind == "gpx":
            name, points = gpx.parse_checked(document)
            return ParsedRun(name, points, "gpx")
        if kind == "TrainingCenterDatabase":
            name, points = tcx.parse_root(root)
            return ParsedRun(name, points, "tcx")
    except XmlRefused as exc:
        raise ImportRefused(f"invalid file: {exc}") from exc
    except gpx.GpxError as exc:
        raise ImportRefused(f"invalid GPX: {exc}") from exc
    except tcx.TcxError as exc:
        raise ImportRefused(f"invalid TCX: {exc}") from exc
    except fit.FitError as exc:
        raise ImportRefused(str(exc)) from exc
    raise ImportRefused(f"not a GPX, TCX or FIT document (the root element is {kind!r})")
