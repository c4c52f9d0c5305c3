"""FIT, TCX and GPX: the same run in each format gives the same distance, heart rate and
cadence survive a round trip, and a run already imported in one format is not doubled by
another."""

from __future__ import annotations

import pytest

from running import fit, gpx, imports, tcx
from running.analysis import replay
from running.synthetic import generate
from running.track import GpsPoint
from tests.running.conftest import member

START = 1_790_000_000.0  # whole seconds: FIT stores no fractions


def _run(seconds: int = 900) -> list[GpsPoint]:
    track = generate(4, seconds=seconds, start_time=START)
    return [
        GpsPoint(t=s.t, lat=s.lat, lon=s.lon, acc=5.0, alt=round(s.altitude, 1), hr=s.heart_rate, cad=168 + index % 7)
        for index, s in enumerate(track.samples)
    ]


def test_the_same_run_in_fit_tcx_and_gpx_gives_the_same_distance():
    points = _run()
    documents = {
        "gpx": gpx.export(points, name="Morning"),
        "tcx": tcx.export(points, name="Morning"),
        "fit": fit.export(points),
    }
    distances = {}
    for kind, document in documents.items():
        parsed = imports.parse(document)
        assert parsed.source == kind
        assert len(parsed.points) == len(points)
        for original, back in zip(points, parsed.points, strict=True):
            assert back.t == pytest.approx(original.t, abs=0.001)
            assert back.lat == pytest.approx(original.lat, abs=1e-6)
            assert back.lon == pytest.approx(original.lon, abs=1e-6)
            assert (back.hr, back.cad) == (original.hr, original.cad)  # heart rate and cadence round-trip
            assert back.alt == pytest.approx(original.alt, abs=0.2)
        distances[kind] = replay(parsed.points).distance_m
    low, high = min(distances.values()), max(distances.values())
    assert (high - low) / low < 0.005, distances


def test_garmin_extensions_from_other_apps_are_read():
    document = (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<gpx xmlns="http://www.topografix.com/GPX/1/1" version="1.1" creator="Garmin Connect"'
        b' xmlns:ns3="http://www.garmin.com/xmlschemas/TrackPointExtension/v1"><trk><name>Park</name><trkseg>'
        b'<trkpt lat="37.5" lon="127.0"><ele>20.0</ele><time>2026-11-01T06:00:00Z</time><extensions>'
        b"<ns3:TrackPointExtension><ns3:hr>131</ns3:hr><ns3:cad>84</ns3:cad></ns3:TrackPointExtension>"
        b"</extensions></trkpt>"
        b'<trkpt lat="37.50002" lon="127.0"><time>2026-11-01T06:00:01Z</time></trkpt></trkseg></trk></gpx>'
    )
    parsed = imports.parse(document)
    assert parsed.name == "Park"
    assert (parsed.points[0].hr, parsed.points[0].cad, parsed.points[1].hr) == (131, 84, None)


async def test_one_run_imported_as_fit_then_gpx_is_one_run(running):
    runner = member()
    points = _run(seconds=300)
    headers = runner.headers
    first = await running.client.post("/v1/runs/import", content=fit.export(points), headers=headers)
    assert first.status_code == 201, first.text
    assert first.json()["source"] == "fit"
    again = await running.client.post("/v1/runs/import", content=gpx.export(points, name="x"), headers=headers)
    assert again.status_code == 200
    assert again.json()["run_id"] == first.json()["run_id"]
    tcx_run = await running.client.post("/v1/runs/import", content=tcx.export(points, name="x"), headers=headers)
    assert tcx_run.json()["run_id"] == first.json()["run_id"]


def test_made_up_namespace_prefixes_do_not_pile_up():
    from xml.etree import ElementTree

    before = len(ElementTree._namespace_map)
    for number in range(20):
        document = (
            f'<gpx xmlns="http://www.topografix.com/GPX/1/1" xmlns:p{number}x="urn:x:{number}" version="1.1">'
            '<trk><trkseg><trkpt lat="37.5" lon="127.0"><time>2026-11-01T06:00:00Z</time></trkpt>'
            '<trkpt lat="37.5001" lon="127.0"><time>2026-11-01T06:00:01Z</time></trkpt></trkseg></trk></gpx>'
        ).encode()
        imports.parse(document)
    assert len(ElementTree._namespace_map) == before
