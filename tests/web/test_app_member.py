"""The member app beyond the pass, in chromium: face enrolment from a file and from the
camera with the consent shown and accepted, and erasure; a review written on a branch page
and listed; a GPX run imported, seen in the history with its charts and exported again; a
FIT and a TCX run imported (a damaged FIT refused); a helper's balance after the owner
confirms a task, and a payout request."""

from __future__ import annotations

import math
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from smartgym.demo import BRANCH, MEMBERS, OWNER, PASSWORD
from tests.helper.images import jpeg, scene
from tests.support.browser import ARTIFACTS, assert_accessible, launch
from tests.support.fitfile import Sample
from tests.support.fitfile import activity as fit_activity
from tests.web.conftest import PageWatch
from tests.web.test_app import sign_in_app
from tests.web.test_console import make_helper
from tests.web.test_kiosk import photo_video


def new_member(stack) -> str:
    email = f"member-{uuid.uuid4().hex[:8]}@example.com"
    created = httpx.post(f"{stack.gateway}/api/auth/signup", json={"email": email, "password": PASSWORD}, timeout=10)
    assert created.status_code == 201, created.text
    return email


def wait_until(check, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def gpx_run(start: datetime, *, seconds: int = 720) -> bytes:
    """A 12-minute run north at ~3 m/s, climbing and falling 20 m, with a
    heart rate that rises through the zones (what a watch's GPX carries)."""
    points = []
    for second in range(0, seconds, 2):
        at = (start + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ")
        lat = 37.5 + second * 3.0 / 111_195
        lon = 127.03 + 0.002 * math.sin(second / seconds * math.pi)  # a bend in the river
        ele = 30 + 20 * math.sin(second / seconds * 2 * math.pi)
        hr = 110 + second * 70 // seconds
        points.append(
            f'<trkpt lat="{lat:.7f}" lon="{lon:.7f}"><ele>{ele:.1f}</ele><time>{at}</time>'
            f"<extensions><gpxtpx:TrackPointExtension><gpxtpx:hr>{hr}</gpxtpx:hr>"
            "</gpxtpx:TrackPointExtension></extensions></trkpt>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<gpx xmlns="http://www.topografix.com/GPX/1/1" '
        'xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v1" version="1.1" creator="watch">'
        f"<trk><name>Morning along the river</name><trkseg>{''.join(points)}</trkseg></trk></gpx>"
    ).encode()


@pytest.fixture
def camera_page(playwright, request, tmp_path):
    """camera_page(photo) -> a phone-sized page whose camera films ``photo``."""
    opened = []

    def open_one(photo: Path):
        chromium = launch(
            playwright,
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={photo_video(photo, tmp_path / 'camera.y4m')}",
        )
        context = chromium.new_context(viewport={"width": 390, "height": 844}, permissions=["camera"])
        page = context.new_page()
        opened.append((chromium, page, PageWatch(page)))
        return page

    yield open_one
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for chromium, page, watch in opened:
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        chromium.close()
        assert not watch.problems, watch.problems


def test_a_member_enrols_a_face_from_a_file_then_the_camera_after_consenting_and_erases_it(stack, camera_page):
    # The kiosk's member: the kiosk tests enrol them again, with a later enrolment version.
    photo = stack.photos / "member1.jpg"
    page = camera_page(photo)
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in_app(page, stack.gateway, MEMBERS[0])
    page.click("#tab-account")
    page.wait_for_selector("#face-consent-text")
    assert "template" in page.inner_text("#face-consent-text")
    if page.get_attribute("#face", "data-enrolled") == "true":  # left from an earlier test
        page.click("#face-erase")
        page.wait_for_selector("#face[data-enrolled='false']")
        page.wait_for_selector("#face-consent-text")
    page.set_input_files("#face-file", str(photo))
    page.click("#face-upload")  # the consent is not ticked yet: refused in the page
    page.wait_for_selector("#face-status:has-text('Accept the consent')")
    page.check("#face-consent")
    page.click("#face-upload")
    page.wait_for_selector("#face[data-enrolled='true']", timeout=30_000)
    member = stack.login(MEMBERS[0])
    state = httpx.get(f"{stack.gateway}/api/auth/me/face", headers=member, timeout=10).json()
    assert state["enrolled_at"], state
    assert state["consent_given_at"], state
    assert_accessible(page)
    page.click("#face-erase")
    page.wait_for_selector("#face[data-enrolled='false']")
    page.wait_for_selector("#face-status:has-text('deleted')")
    state = httpx.get(f"{stack.gateway}/api/auth/me/face", headers=member, timeout=10).json()
    assert state["enrolled_at"] is None, state
    assert state["consent_given_at"] is None, state
    # Again from the camera: the consent was withdrawn with the erasure, so it is asked anew.
    page.check("#face-consent")
    page.click("#face-camera")
    page.wait_for_selector("#face-shoot:visible")
    page.click("#face-shoot")
    page.wait_for_selector("#face[data-enrolled='true']", timeout=30_000)
    page.click("#face-erase")
    page.wait_for_selector("#face[data-enrolled='false']")


def test_a_member_writes_a_review_on_the_branch_page_and_sees_it(stack, open_page):
    member = stack.login(MEMBERS[1])
    # The branch has a profile (as its owner writes it) that search indexes from its event.
    profile = {
        "name": "데모짐 강남점",
        "address": "서울 강남구 테헤란로 1",
        "lat": 37.4981,
        "lon": 127.0276,
        "hours": [],
        "facilities": ["shower", "locker"],
    }
    saved = httpx.put(
        f"{stack.gateway}/api/branch-owner/v1/branches/{BRANCH}", json=profile, headers=stack.login(OWNER), timeout=15
    )
    assert saved.is_success, saved.text
    wait_until(
        lambda: httpx.get(f"{stack.gateway}/api/search/branches/{BRANCH}", headers=member, timeout=10).is_success,
        timeout=30,
        what="search never knew the demo branch",
    )
    page = open_page(locale="ko-KR", viewport={"width": 390, "height": 844})
    sign_in_app(page, stack.gateway, MEMBERS[1])
    page.goto(f"{stack.gateway}/app#branch/{BRANCH}")
    page.wait_for_selector("#review-form")
    words = f"샤워실이 깨끗해요 {uuid.uuid4().hex[:6]}"
    page.select_option("#review-rating", "4")
    page.fill("#review-text", words)
    page.click("#review-send")
    mine = page.locator("#branch-reviews li[data-mine='true']")
    mine.wait_for()
    assert words in mine.inner_text()
    assert "★★★★☆" in mine.inner_text()
    assert_accessible(page)


def test_a_member_imports_a_gpx_sees_it_with_charts_and_exports_it(stack, open_page, tmp_path):
    email = new_member(stack)
    track = tmp_path / "river.gpx"
    track.write_bytes(gpx_run(datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)))
    page = open_page(viewport={"width": 390, "height": 844})
    sign_in_app(page, stack.gateway, email)
    page.click("#tab-history")
    page.wait_for_selector("#history-runs li.muted")  # no runs yet
    page.wait_for_selector("#steps-ranking li.me")  # the member alone ranks first
    page.set_input_files("#history-file", str(track))
    page.click("#history-import")
    page.wait_for_selector("#run-title:has-text('Morning along the river')", timeout=20_000)
    page.wait_for_selector("#run-pace-chart canvas")
    page.wait_for_selector("#run-elevation-chart canvas")
    page.wait_for_selector("#run-map path.leaflet-interactive", state="attached")  # the track is drawn
    assert page.locator("#run-splits tbody tr").count() == 2  # 2.16 km: two whole kilometres
    assert page.locator("#run-hr .zones li").count() == 5
    assert_accessible(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-run-detail.png"), full_page=True)
    with page.expect_download() as download:
        page.click("#run-export")
    exported = download.value.path().read_text()
    assert exported.count("<trkpt") > 300
    assert "Morning along the river" in exported
    page.click("#run-back")
    page.wait_for_selector("#history-runs a.run-link")
    page.wait_for_selector("#records-table")
    # The name friends see on the step ranking is the runner's own choice.
    page.wait_for_selector("#profile-zones:has-text('bpm')")
    page.fill("#profile-name", "River Runner")
    page.fill("#profile-maxhr", "185")
    page.press("#profile-maxhr", "Enter")  # the last card's button sits under the tab bar until scrolled
    page.wait_for_selector("#profile-zones:has-text('185')")


def watch_samples(start: datetime, *, seconds: int = 700) -> list[Sample]:
    """Eleven and a half minutes east at 3.2 m/s over a 15 m hill, the heart rising through
    the zones; the watch's first second has no fix yet."""
    t0 = start.timestamp()
    samples = [Sample(t0, None, None, 30.0, 100, 0.0, 0.0)]
    for second in range(1, seconds):
        samples.append(
            Sample(
                t0 + second,
                37.51,
                127.02 + second * 3.2 / (111_320 * math.cos(math.radians(37.51))),
                30 + 15 * math.sin(second / seconds * math.pi),
                110 + second * 75 // seconds,
                second * 3.2,
                3.2,
            )
        )
    return samples


def tcx_run(start: datetime) -> bytes:
    """The same kind of run as Garmin Connect exports it: one lap, trackpoints with
    distance and heart rate, the activity's name in its notes."""
    points = []
    for sample in watch_samples(start)[1::2]:
        at = datetime.fromtimestamp(sample.t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        points.append(
            f"<Trackpoint><Time>{at}</Time><Position><LatitudeDegrees>{sample.lat:.7f}</LatitudeDegrees>"
            f"<LongitudeDegrees>{sample.lon:.7f}</LongitudeDegrees></Position>"
            f"<AltitudeMeters>{sample.alt_m:.1f}</AltitudeMeters><DistanceMeters>{sample.distance_m:.1f}</DistanceMeters>"
            f"<HeartRateBpm><Value>{sample.hr}</Value></HeartRateBpm></Trackpoint>"
        )
    began = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<TrainingCenterDatabase xmlns="http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2">'
        f'<Activities><Activity Sport="Running"><Id>{began}</Id><Lap StartTime="{began}">'
        "<TotalTimeSeconds>700</TotalTimeSeconds><DistanceMeters>2240</DistanceMeters>"
        f"<Intensity>Active</Intensity><TriggerMethod>Manual</TriggerMethod><Track>{''.join(points)}</Track>"
        "</Lap><Notes>Lunch loop</Notes></Activity></Activities></TrainingCenterDatabase>"
    ).encode()


def test_a_member_imports_a_fit_and_a_tcx_from_their_watch(stack, open_page, tmp_path):
    email = new_member(stack)
    now = datetime.now(UTC).replace(microsecond=0)
    fit_path, tcx_path, broken = tmp_path / "watch.fit", tmp_path / "lunch.tcx", tmp_path / "broken.fit"
    fit_path.write_bytes(fit_activity(watch_samples(now - timedelta(days=2))))
    tcx_path.write_bytes(tcx_run(now - timedelta(days=1)))
    damaged = bytearray(fit_path.read_bytes())
    damaged[200] ^= 0xFF  # a bit flipped in a record: the file's CRC no longer holds
    broken.write_bytes(bytes(damaged))
    page = open_page(viewport={"width": 390, "height": 844})
    sign_in_app(page, stack.gateway, email)
    page.click("#tab-history")
    page.wait_for_selector("#history-runs li.muted")

    page.set_input_files("#history-file", str(broken))
    page.click("#history-import")
    page.wait_for_selector("#history-status:has-text('invalid FIT')", timeout=20_000)

    for path, title in ((fit_path, "Imported run"), (tcx_path, "Lunch loop")):
        page.set_input_files("#history-file", str(path))
        page.click("#history-import")
        page.wait_for_selector(f"#run-title:has-text('{title}')", timeout=20_000)
        page.wait_for_selector("#run-pace-chart canvas")
        page.wait_for_selector("#run-elevation-chart canvas")  # the altitude came across
        page.wait_for_selector("#run-map path.leaflet-interactive", state="attached")
        assert page.locator("#run-splits tbody tr").count() == 2  # 2.24 km: two whole kilometres
        assert page.locator("#run-hr .zones li").count() == 5  # the heart rate came across
        page.click("#run-back")
        page.wait_for_selector("#history-runs a.run-link")
    assert page.locator("#history-runs a.run-link").count() == 2
    assert_accessible(page)


def test_a_helper_sees_the_balance_grow_after_the_owner_confirms_and_requests_a_payout(stack, open_page):
    owner = stack.login(OWNER)
    helper_id, helper = make_helper(stack)
    with httpx.Client(base_url=stack.gateway, timeout=15) as client:
        task_type = {"category": "cleaning", "title": "Wipe mirrors", "reward_krw": 2500, "daily_limit": 20}
        assert client.put(
            f"/api/helper/v1/branches/{BRANCH}/task-types/mirrors", json=task_type, headers=owner
        ).is_success
        assert client.put(f"/api/helper/v1/branches/{BRANCH}/helpers/{helper_id}", headers=owner).status_code == 204
        form = {"branch_id": BRANCH, "task_type": "mirrors", "client_key": uuid.uuid4().hex}
        files = [("photos", ("mirror.jpg", jpeg(scene(21)), "image/jpeg"))]
        submitted = client.post("/api/helper/v1/tasks", data=form, files=files, headers=helper)
        assert submitted.status_code == 201, submitted.text
        task_id = submitted.json()["id"]
        email = client.get("/api/auth/me", headers=helper).json()["email"]
    page = open_page(viewport={"width": 390, "height": 844})
    sign_in_app(page, stack.gateway, email)
    page.click("#tab-helper")
    page.wait_for_selector("#helper-balance:has-text('Balance: 0 KRW')")
    page.wait_for_selector("#helper-ledger li.muted")
    queue = f"{stack.gateway}/api/branch-owner/v1/branches/{BRANCH}/queue/{task_id}"
    wait_until(  # judged, then in the owner's queue through events
        lambda: httpx.get(queue, headers=owner, timeout=10).is_success, timeout=30, what="never queued"
    )
    decided = httpx.post(f"{queue}/decision", json={"decision": "approve"}, headers=owner, timeout=10)
    assert decided.is_success, decided.text
    page.wait_for_selector("#helper-balance:has-text('2,500')", timeout=30_000)
    page.wait_for_selector("#helper-ledger li[data-kind='task_reward']")
    page.fill("#payout-amount", "2000")
    page.click("#payout-send")
    page.wait_for_selector("#helper-payouts li[data-status='requested']")
    page.wait_for_selector("#helper-balance:has-text('Balance: 500 KRW')")
    assert_accessible(page)


def test_inside_the_wrapper_the_inbox_registers_the_fcm_token_and_lists_the_welcome(stack, open_page):
    email = new_member(stack)
    token = f"fcm-{uuid.uuid4().hex}:APA91b-test"
    page = open_page(viewport={"width": 390, "height": 844})
    # What the native wrapper puts on the page before it loads.
    page.add_init_script(f"window.SmartGymWrapper = {{ fcmToken: {token!r}, platform: 'android' }};")
    sign_in_app(page, stack.gateway, email)
    page.click("#tab-inbox")
    page.wait_for_selector("#inbox-push[data-registered='true']")
    with sqlite3.connect(stack.data_dir / "notification.db") as db:
        stored = db.execute("SELECT platform FROM push_tokens WHERE token = ?", (token,)).fetchall()
    assert stored == [("android",)]
    deadline = time.monotonic() + 20
    while not page.locator("#inbox-list li[data-read='false']").count():  # the welcome, from signup's event
        assert time.monotonic() < deadline, "no welcome in the inbox"
        page.click("#tab-pass")
        page.click("#tab-inbox")
        page.wait_for_selector("#inbox-list li")
    assert_accessible(page)
    page.click("#inbox-read")
    page.wait_for_selector("#inbox-list li[data-read='true']")
