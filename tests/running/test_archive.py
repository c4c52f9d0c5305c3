"""A whole history as one zip of run files: each file answered, re-importing imports
nothing twice, bombs and junk are refused per file, and it all passes the real gateway."""

from __future__ import annotations

import asyncio
import gzip
import io
import time
import zipfile

import aiohttp
import pytest
from click.testing import CliRunner

from contracts import RunFinished
from running import fit, gpx, tcx
from running.synthetic import generate
from running.track import GpsPoint
from smartgym.cli import main
from tests.running.conftest import member
from tests.support.waiting import eventually


def _points(seed: int, days_ago: int, seconds: int = 900) -> list[GpsPoint]:
    track = generate(seed, seconds=seconds, start_time=time.time() - days_ago * 86400)
    return [
        GpsPoint(t=s.t, lat=s.lat, lon=s.lon, acc=s.accuracy, alt=s.altitude, hr=s.heart_rate) for s in track.samples
    ]


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("Garmin/", b"")  # a folder entry
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _history() -> bytes:
    first, second, third = _points(1, 9), _points(2, 6), _points(3, 3)
    return _zip(
        {
            "Garmin/Activity/2026-11-21-0700.fit": fit.export(first),
            "Garmin/Activity/2026-11-24-0700.TCX": tcx.export(second, name="Tempo"),
            "strava/activities/300.gpx.gz": gzip.compress(gpx.export(third, name="Long run")),
            "strava/activities/100.gpx": gpx.export(first, name="Same run as GPX"),  # one run, two files
            "Garmin/Activity/broken.fit": b".FIT" + b"\x00" * 64,
            "README.txt": b"exported by a watch",
            ".DS_Store": b"\x00\x00",
        }
    )


async def test_an_archive_imports_each_run_once_and_answers_file_by_file(running):
    runner = member()
    archive = _history()
    first = await running.client.post("/v1/runs/archive", content=archive, headers=runner.headers)
    assert first.status_code == 200, first.text
    body = first.json()
    assert {key: body[key] for key in ("imported", "known", "refused", "skipped")} == {
        "imported": 3,
        "known": 1,
        "refused": 1,
        "skipped": 1,
    }
    by_name = {item["name"]: item for item in body["files"]}
    assert by_name["strava/activities/100.gpx"]["status"] == "known"  # the FIT file's run
    assert by_name["strava/activities/100.gpx"]["run_id"] == by_name["Garmin/Activity/2026-11-21-0700.fit"]["run_id"]
    assert by_name["Garmin/Activity/broken.fit"]["status"] == "refused"
    assert by_name["README.txt"] == {"name": "README.txt", "status": "skipped", "reason": "not a FIT, TCX or GPX file"}
    records = (await running.client.get("/v1/records", headers=runner.headers)).json()

    again = (await running.client.post("/v1/runs/archive", content=archive, headers=runner.headers)).json()
    assert (again["imported"], again["known"]) == (0, 4)
    assert (await running.client.get("/v1/records", headers=runner.headers)).json() == records  # nothing doubled
    assert records["runs"] == 3
    await eventually(lambda: len(running.of(RunFinished)) == 3, timeout=5)


async def test_bombs_and_junk_are_refused_with_reasons(running):
    runner = member()
    bomb = _zip({"bomb.gpx": b"\x00" * (24 * 1024 * 1024), "ok.fit": fit.export(_points(4, 2, 300))})
    assert len(bomb) < 200 * 1024
    answer = (await running.client.post("/v1/runs/archive", content=bomb, headers=runner.headers)).json()
    by_name = {item["name"]: item for item in answer["files"]}
    assert by_name["bomb.gpx"]["status"] == "refused"
    assert "inflates too far" in by_name["bomb.gpx"]["reason"]
    assert by_name["ok.fit"]["status"] == "imported"  # one bad file does not sink the rest
    for junk, reason in ((b"not a zip at all", "not a zip archive"), (b"PK\x03\x04broken", "not a readable zip")):
        refused = await running.client.post("/v1/runs/archive", content=junk, headers=runner.headers)
        assert refused.status_code == 422
        assert reason in refused.json()["detail"]


@pytest.mark.slow
async def test_a_history_and_a_marathon_pass_the_gateway(tmp_path):
    """The real gateway in front of the real running service: its body limit for running
    lets a marathon file and an archive through and stops what is larger."""
    from common.migrations import upgrade
    from gateway.app import create_app as create_gateway
    from gateway.settings import GatewaySettings
    from running.app import create_app as create_running
    from tests.running.conftest import running_settings
    from tests.support import tokens
    from tests.support.apps import serving

    settings = running_settings(tmp_path)
    upgrade("running", settings.database_url("running"))
    runner = member()
    marathon = gpx.export(_points(11, 20, 4 * 3600 + 600), name="Marathon")
    assert len(marathon) > 3 * 1024 * 1024
    async with serving(create_running(settings, keys=tokens.key_cache())) as rest, serving(tokens.jwks_app()) as auth:
        config = GatewaySettings(environment="test", auth_url=auth, running_url=rest)
        async with serving(create_gateway(config)) as gateway, aiohttp.ClientSession() as session:
            base = f"{gateway}/api/running/v1/runs"
            async with session.post(f"{base}/import", data=marathon, headers=runner.headers) as response:
                assert response.status == 201, await response.text()
                run = await response.json()
                assert run["distance_m"] > 20_000
            # Its share link opens the run with no account: the gateway lets /v1/shared/ through.
            async with session.post(f"{base}/{run['run_id']}/share", json={"hours": 1}, headers=runner.headers) as link:
                token = (await link.json())["token"]
            async with session.get(f"{gateway}/api/running/v1/shared/{token}") as shared:
                assert shared.status == 200
                assert (await shared.json())["run_id"] == run["run_id"]
            async with session.post(f"{base}/archive", data=_history(), headers=runner.headers) as response:
                assert response.status == 200, await response.text()
                assert (await response.json())["imported"] == 3
            too_big = b"PK\x03\x04" + b"\x00" * (33 * 1024 * 1024)
            async with session.post(f"{base}/archive", data=too_big, headers=runner.headers) as response:
                assert response.status == 413
            # A member's own folder, through the command line and the same gateway.
            folder = tmp_path / "watch"
            (folder / "Activity").mkdir(parents=True)
            (folder / "Activity" / "a.fit").write_bytes(fit.export(_points(21, 5, 300)))
            (folder / "Activity" / "b.tcx").write_bytes(tcx.export(_points(22, 4, 300), name="b"))
            (folder / "Activity" / "bad.gpx").write_bytes(b"<gpx/>")
            (folder / "notes.txt").write_text("not a run")
            args = ["import-runs", str(folder), "--api", gateway, "--token", runner.token, "--batch-mib", "1"]
            for expected in ("2 imported, 0 known, 1 refused, 0 skipped", "0 imported, 2 known, 1 refused, 0 skipped"):
                result = await asyncio.to_thread(CliRunner().invoke, main, args)
                assert result.exit_code == 0, result.output
                assert result.output.splitlines()[-1] == expected
                assert "refused  Activity/bad.gpx" in result.output
