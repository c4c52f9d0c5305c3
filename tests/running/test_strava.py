"""Sending a run to Strava through a local stand-in speaking Strava's wire format: the
code exchange, a refresh of an expired token (rotated), the upload with retries on 429
and 503, and polling until the activity exists."""

from __future__ import annotations

import time

from running import fit
from running.models import StravaLink
from running.strava_sim import StravaSimState
from running.strava_sim import create_app as create_strava
from running.synthetic import generate
from running.track import GpsPoint
from tests.running.conftest import member
from tests.support.apps import serving


def _fit_file() -> bytes:
    track = generate(6, seconds=300, start_time=round(time.time()) - 86400)
    return fit.export(
        [GpsPoint(t=s.t, lat=s.lat, lon=s.lon, acc=5.0, alt=s.altitude, hr=s.heart_rate) for s in track.samples]
    )


async def test_a_run_reaches_strava_through_refresh_retries_and_polling(open_running):
    state = StravaSimState(token_lifetime_s=30, retry_after="0")  # inside the refresh margin: every use refreshes
    async with serving(create_strava(state)) as url:
        strava = {
            "running_strava_url": url,
            "running_strava_client_id": state.client_id,
            "running_strava_client_secret": state.client_secret,
            "running_strava_backoff_s": 0.05,
        }
        async with open_running(**strava) as running:
            runner = member()
            run = (await running.client.post("/v1/runs/import", content=_fit_file(), headers=runner.headers)).json()
            not_yet = await running.client.post(f"/v1/runs/{run['run_id']}/strava", headers=runner.headers)
            assert not_yet.status_code == 409
            assert not_yet.json()["detail"] == "connect Strava first"
            bad = await running.client.post("/v1/strava/connect", json={"code": "x y"}, headers=runner.headers)
            assert bad.status_code == 422
            connected = await running.client.post("/v1/strava/connect", json={"code": "abc123"}, headers=runner.headers)
            assert connected.status_code == 200, connected.text
            first_refresh = set(state.refresh)
            async with running.app.state.kernel.db.sessions() as session:
                link = await session.get(StravaLink, runner.user_id)
            assert link.refresh_token not in first_refresh  # sealed at rest, not Strava's token as is

            state.failures = [429, 503]  # Strava busy: the client waits and tries again
            sent = await running.client.post(f"/v1/runs/{run['run_id']}/strava", headers=runner.headers)
            assert sent.status_code == 200, sent.text
            result = sent.json()
            assert result["processed"] is True
            assert result["activity_id"] is not None
            assert set(state.refresh).isdisjoint(first_refresh)  # the rotated refresh token was kept
            [upload] = state.uploads.values()
            assert upload["data_type"] == "fit"
            assert upload["external_id"] == f"smartgym-{run['run_id']}"
            assert fit.parse(upload["file"])[1][0].hr is not None  # the file Strava got is the run

            again = await running.client.post(f"/v1/runs/{run['run_id']}/strava", headers=runner.headers)
            assert again.json()["upload_id"] == result["upload_id"]  # not sent twice
            assert len(state.uploads) == 1
            someone = member()
            theirs = await running.client.post(f"/v1/runs/{run['run_id']}/strava", headers=someone.headers)
            assert theirs.status_code == 404

            state.failures = [503] * 10  # down for good: a clear 503, not a 500
            down = await running.client.post("/v1/strava/connect", json={"code": "zzz"}, headers=runner.headers)
            assert down.status_code == 503


async def test_without_strava_configured_the_routes_say_so(running):
    runner = member()
    answer = await running.client.post("/v1/strava/connect", json={"code": "abc"}, headers=runner.headers)
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "60"
    assert answer.json()["detail"] == "Strava is not configured"
