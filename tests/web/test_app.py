"""The member and helper app in chromium: sign up, the entry pass as a QR code that the
kiosk's camera accepts, the shell and the last pass without a network, gym search, and a
helper's task with two photos."""

from __future__ import annotations

import base64
import time
import uuid

import cv2
import httpx
import numpy as np

from smartgym.demo import BRANCH, MEMBERS, OWNER, PASSWORD
from tests.helper.images import jpeg, scene
from tests.support.browser import assert_accessible
from tests.web import test_kiosk
from tests.web.test_console import make_helper
from tests.web.test_kiosk import qr_video

# The kiosk, with its fake camera, is where the pass on the member's screen is shown.
kiosk_page = test_kiosk.kiosk_page


def sign_in_app(page, gateway: str, email: str) -> None:
    page.goto(f"{gateway}/app")
    page.fill("#auth-email", email)
    page.fill("#auth-password", PASSWORD)
    page.click("#auth-submit")
    page.wait_for_selector("#logout")


def shown_code(page) -> str:
    """The pass as the member's screen shows it, decoded from the picture itself."""
    source = page.get_attribute("#pass-qr", "src")
    assert source, "no QR picture"
    assert source.startswith("data:image/png;base64,"), source
    image = cv2.imdecode(np.frombuffer(base64.b64decode(source.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "the QR picture does not decode as PNG"
    # The pass is a dense code (a signed token of several hundred characters) drawn with
    # about three pixels per module; OpenCV's classic detector misses many such codes, its
    # ArUco-based one reads them once each module is a few pixels wider.
    image = cv2.copyMakeBorder(image, 40, 40, 40, 40, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    image = cv2.resize(image, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
    for detector in (cv2.QRCodeDetectorAruco(), cv2.QRCodeDetector()):
        code, _, _ = detector.detectAndDecode(image)
        if code:
            return str(code)
    raise AssertionError("the QR code on screen does not decode")


def test_a_new_member_signs_up_in_korean_and_is_told_there_is_no_pass_yet(stack, open_page):
    page = open_page(locale="ko-KR", viewport={"width": 390, "height": 844})
    page.goto(f"{stack.gateway}/app")
    page.click("#auth-toggle")
    page.fill("#auth-email", f"new-{uuid.uuid4().hex[:8]}@example.com")
    page.fill("#auth-password", "a long enough password")
    page.click("#auth-submit")
    page.wait_for_selector("#pass-none")
    assert "회원권" in page.inner_text("#pass-none")
    assert page.get_attribute("link[rel=manifest]", "href") == "/app/manifest.webmanifest"
    assert_accessible(page)


def test_the_pass_on_screen_opens_the_gate_and_still_shows_offline(stack, open_page, kiosk_page, tmp_path):
    page = open_page(viewport={"width": 390, "height": 844})
    sign_in_app(page, stack.gateway, MEMBERS[0])
    page.wait_for_selector("#pass-qr")
    code = shown_code(page)
    assert code == page.get_attribute("#pass", "data-code")
    assert_accessible(page)
    # The service worker has the shell; with the network gone the last pass still shows.
    page.wait_for_function("document.documentElement.dataset.offlineReady === 'true'", timeout=15_000)
    page.wait_for_timeout(500)
    page.context.set_offline(True)
    page.reload()
    page.wait_for_selector("#pass-qr")
    assert shown_code(page) == code
    page.context.set_offline(False)
    # The pass, as shown, at the door.
    before = stack.log_size()
    kiosk = kiosk_page(qr_video(code, tmp_path / "pass.y4m"))
    kiosk.wait_for_selector("#reason[data-reason='granted']", timeout=30_000)
    stack.wait_for_log(f"virtual gate {BRANCH} #1: OPEN", after=before)
    # The member is inside now: the owner lets them in again, as other tests enter as them.
    member_id = httpx.get(f"{stack.gateway}/api/auth/me", headers=stack.login(MEMBERS[0]), timeout=10).json()["id"]
    reset = httpx.post(
        f"{stack.gateway}/api/access/v1/branches/{BRANCH}/members/{member_id}/passback-reset",
        json={"reason": "browser test of the member app"},
        headers=stack.login(OWNER),
        timeout=10,
    )
    assert reset.status_code == 200, reset.text


def test_a_member_searches_in_korean_and_opens_a_gym(stack, open_page):
    # The demo gym becomes a 24-hour Gangnam gym with showers, as its owner would say.
    owner, member = stack.login(OWNER), stack.login(MEMBERS[1])
    with httpx.Client(base_url=stack.gateway, timeout=15) as client:
        profile = {
            "name": "데모짐 강남점",
            "address": "서울 강남구 테헤란로 1",
            "lat": 37.4981,
            "lon": 127.0276,
            "hours": [],
            "facilities": ["shower", "locker"],
        }
        saved = client.put(f"/api/branch-owner/v1/branches/{BRANCH}", json=profile, headers=owner)
        assert saved.is_success, saved.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # search indexes the change from its event
            found = client.get("/api/search/search", params={"q": "강남 24시간 샤워"}, headers=member).json()
            if any(hit["branch_id"] == BRANCH for hit in found.get("hits", [])):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"search never found the gym: {found}")
    page = open_page(locale="ko-KR")
    sign_in_app(page, stack.gateway, MEMBERS[1])
    page.click("#tab-search")
    page.fill("#search-q", "강남 24시간 샤워")
    page.click("#search-go")
    page.wait_for_selector("#search-results li a.hit-name", timeout=15_000)
    first = page.locator("#search-results li a.hit-name").first
    name = first.inner_text()
    first.click()
    page.wait_for_selector("#branch-name")
    assert page.inner_text("#branch-name") == name
    assert_accessible(page)


def test_a_helper_submits_a_task_with_two_photos_and_sees_the_verdict(stack, open_page, tmp_path):
    owner = stack.login(OWNER)
    helper_id, _ = make_helper(stack)
    with httpx.Client(base_url=stack.gateway, timeout=15) as client:
        task_type = {"category": "laundry", "title": "Fold towels", "reward_krw": 2000, "daily_limit": 20}
        assert client.put(f"/api/helper/v1/branches/{BRANCH}/task-types/fold", json=task_type, headers=owner).is_success
        assert client.put(f"/api/helper/v1/branches/{BRANCH}/helpers/{helper_id}", headers=owner).status_code == 204
        email = client.get("/api/auth/me", headers=_).json()["email"]
    photos = []
    for index in range(2):
        path = tmp_path / f"photo{index}.jpg"
        path.write_bytes(jpeg(scene(11 + index)))
        photos.append(str(path))
    page = open_page(viewport={"width": 390, "height": 844})
    sign_in_app(page, stack.gateway, email)
    page.click("#tab-helper")
    page.wait_for_selector("#helper-balance:not(:has-text('…'))")
    page.fill("#helper-branch", BRANCH)
    page.fill("#helper-type", "fold")
    page.set_input_files("#helper-photos", photos)
    page.click("#helper-send")
    page.wait_for_selector("#helper-status:has-text('Task sent')", timeout=15_000)
    page.wait_for_selector("#helper-tasks li.task:has-text('AI:')", timeout=30_000)
    assert_accessible(page)


def test_a_member_stays_signed_in_past_the_access_tokens_life_and_signing_out_revokes_the_session(stack, open_page):
    page = open_page(viewport={"width": 390, "height": 844})
    sign_in_app(page, stack.gateway, MEMBERS[1])
    first_refresh = page.evaluate("localStorage.getItem('smartgym.app.refresh')")
    assert first_refresh
    # The app reopened after the access token ran out (its signature does not matter: an
    # expired token is never sent, and a refused one is renewed too).
    expired = ".".join(
        base64.urlsafe_b64encode(part.encode()).decode().rstrip("=")
        for part in ('{"alg":"RS256"}', '{"sub":"x","exp":1000,"roles":["customer"]}', "sig")
    )
    page.evaluate(f"localStorage.setItem('smartgym.app', '{expired}')")
    page.reload()
    page.wait_for_selector("#logout")
    renewed = page.evaluate("localStorage.getItem('smartgym.app.refresh')")
    assert renewed
    assert renewed != first_refresh, "the refresh token was not rotated"
    assert httpx.get(
        f"{stack.gateway}/api/auth/me",
        headers={"authorization": f"Bearer {page.evaluate('localStorage.getItem(`smartgym.app`)')}"},
        timeout=10,
    ).is_success
    page.click("#logout")
    page.wait_for_selector("#auth-email")
    refused = httpx.post(f"{stack.gateway}/api/auth/token/refresh", json={"refresh_token": renewed}, timeout=10)
    assert refused.status_code == 401, refused.text
