"""The branch-owner console in chromium, against the demo gym: sign in, edit the opening
hours, watch a treadmill die live and acknowledge its fault, confirm a helper's task."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid

import httpx

from smartgym.demo import BRANCH, OWNER, PASSWORD
from tests.helper.images import jpeg, scene
from tests.support.browser import assert_accessible, screenshot, sign_in


def test_owner_signs_in_and_sees_today_in_korean_on_a_portrait_tablet(stack, open_page):
    page = open_page(locale="ko-KR", viewport={"width": 800, "height": 1280})
    sign_in(page, stack.gateway, "console", OWNER)
    page.wait_for_selector("#occupancy:not(:has-text('…'))")
    assert page.locator("h1.title").inner_text() == "지점 관리 콘솔"
    assert page.locator("#branch-picker").input_value() == BRANCH
    # Narrow screens put the sections above the content, not beside it.
    nav, main = page.locator("nav.sections").bounding_box(), page.locator("#main").bounding_box()
    assert nav["y"] + nav["height"] <= main["y"] + 1
    assert_accessible(page)
    page.click("#lang-switch")  # switchable in place
    assert page.locator("h1.title").inner_text() == "Branch console"
    # Keyboard: the sections are links reachable with Tab, and focus is visible.
    page.keyboard.press("Tab")
    focused = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert focused != "none"


def test_owner_edits_the_opening_hours(stack, open_page):
    page = open_page()
    sign_in(page, stack.gateway, "console", OWNER)
    page.goto(f"{stack.gateway}/console#profile")
    page.wait_for_selector("#profile-save")
    page.fill("#profile-name", "Demo Gym Gangnam")
    page.fill("#profile-address", "Seoul, Gangnam-gu, Teheran-ro 1")
    if page.is_checked("#profile-24h"):
        page.uncheck("#profile-24h")
    page.fill("#hours-mon-open", "07:00")
    page.fill("#hours-mon-close", "22:30")
    page.check("#hours-sun-closed")
    assert_accessible(page)
    page.click("#profile-save")
    page.wait_for_selector("#status:has-text('Saved')")
    profile = httpx.get(f"{stack.gateway}/api/branch-owner/v1/branches/{BRANCH}", headers=stack.login(OWNER)).json()
    hours = {item["day"]: (item["open"], item["close"]) for item in profile["hours"]}
    assert hours["mon"] == ("07:00", "22:30")
    assert "sun" not in hours


def set_mode(stack, device: str, mode: str) -> None:
    answer = httpx.post(f"{stack.control}/devices/{device}/mode", json={"mode": mode}, timeout=5)
    assert answer.status_code == 200, answer.text


def test_health_changes_live_and_the_owner_acknowledges_the_fault(stack, open_page):
    device = "demo-treadmill-00005"
    page = open_page()
    sign_in(page, stack.gateway, "console", OWNER)
    page.goto(f"{stack.gateway}/console#equipment")
    page.wait_for_selector("#live-state[data-state='open']")
    page.wait_for_selector(f"#device-{device} [data-health='ok']", timeout=20_000)
    set_mode(stack, device, "dead")
    try:
        # No reload: the row turns faulty from the event stream, the fault appears.
        page.wait_for_selector(f"#device-{device} [data-health='faulty']", timeout=20_000)
        ack = page.locator(f"#faults button[data-ack='{device}']")
        ack.wait_for(timeout=10_000)
        assert_accessible(page)
        screenshot(page, "console-equipment-fault")
        ack.click()
        page.wait_for_selector("#status:has-text('Acknowledged')")
        faults = httpx.get(
            f"{stack.gateway}/api/monitoring/v1/faults",
            params={"branch_id": BRANCH, "open": "true"},
            headers=stack.login(OWNER),
        ).json()
        [fault] = [item for item in faults if item["device_id"] == device]
        assert fault["acknowledged_at"] is not None
    finally:
        set_mode(stack, device, "ok")
    page.wait_for_selector(f"#device-{device} [data-health='ok']", timeout=20_000)


def make_helper(stack) -> tuple[str, dict[str, str]]:
    email = f"helper-{uuid.uuid4().hex[:8]}@example.com"
    created = httpx.post(f"{stack.gateway}/api/auth/signup", json={"email": email, "password": PASSWORD}, timeout=10)
    assert created.status_code == 201, created.text
    with sqlite3.connect(stack.data_dir / "auth.db") as db:
        db.execute(
            "UPDATE users SET roles = ?, branches = ? WHERE email = ?",
            (json.dumps(["helper"]), json.dumps([BRANCH]), email),
        )
    return created.json()["id"], stack.login(email)


def test_owner_confirms_a_helper_task(stack, open_page):
    owner = stack.login(OWNER)
    helper_id, helper = make_helper(stack)
    with httpx.Client(base_url=stack.gateway, timeout=15) as client:
        task_type = {"category": "laundry", "title": "Wash towels", "reward_krw": 3000, "daily_limit": 20}
        assert client.put(f"/api/helper/v1/branches/{BRANCH}/task-types/wash", json=task_type, headers=owner).is_success
        assert client.put(f"/api/helper/v1/branches/{BRANCH}/helpers/{helper_id}", headers=owner).status_code == 204
        form = {"branch_id": BRANCH, "task_type": "wash", "client_key": uuid.uuid4().hex}
        files = [("photos", ("towels.jpg", jpeg(scene(7)), "image/jpeg"))]
        submitted = client.post("/api/helper/v1/tasks", data=form, files=files, headers=helper)
        assert submitted.status_code == 201, submitted.text
        task_id = submitted.json()["id"]
    page = open_page()
    sign_in(page, stack.gateway, "console", OWNER)
    deadline = time.monotonic() + 30
    while True:  # judged, then in the owner's queue through events
        page.goto(f"{stack.gateway}/console#queue")
        page.wait_for_selector("#queue-items > *")
        if page.locator(f"#task-{task_id}").count():
            break
        assert time.monotonic() < deadline, "the task never reached the queue"
        time.sleep(0.5)
    card = page.locator(f"#task-{task_id}")
    card.locator("img").first.wait_for()
    assert card.locator(".verdict").inner_text()  # the AI's verdict is shown
    assert_accessible(page)
    screenshot(page, "console-queue")
    card.locator("button[data-decide='approve']").click()
    page.wait_for_selector(f"#task-{task_id}", state="detached")
    decided = httpx.get(f"{stack.gateway}/api/branch-owner/v1/branches/{BRANCH}/queue/{task_id}", headers=owner)
    assert decided.json()["status"] == "approved", decided.text


def test_owner_registers_rotates_and_revokes_a_kiosk_and_uploads_a_branch_photo(stack, open_page, tmp_path):
    page = open_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the rotate/revoke confirmations
    sign_in(page, stack.gateway, "console", OWNER)
    page.goto(f"{stack.gateway}/console#devices")
    page.wait_for_selector("#device-list > *")
    name = f"kiosk-{uuid.uuid4().hex[:6]}"
    page.fill("#dev-name", name)
    page.click("#dev-create")
    secret = page.locator("#device-client-secret")
    secret.wait_for()
    credentials = {"client_id": page.inner_text("#device-client-id"), "client_secret": secret.inner_text()}
    token = f"{stack.gateway}/api/auth/devices/token"
    assert httpx.post(token, json=credentials, timeout=10).status_code == 200
    row = page.locator(f"#device-{credentials['client_id']}")
    row.wait_for()
    assert credentials["client_secret"] not in row.inner_text()  # shown once, never listed
    assert_accessible(page)
    screenshot(page, "console-devices")

    row.locator("button.rotate").click()
    deadline = time.monotonic() + 10
    while page.inner_text("#device-client-secret") == credentials["client_secret"]:
        assert time.monotonic() < deadline, "the rotated secret never appeared"
        time.sleep(0.1)
    rotated = {"client_id": credentials["client_id"], "client_secret": page.inner_text("#device-client-secret")}
    assert httpx.post(token, json=credentials, timeout=10).status_code == 401
    assert httpx.post(token, json=rotated, timeout=10).status_code == 200
    row.locator("button.revoke").click()
    row.wait_for(state="detached")
    assert httpx.post(token, json=rotated, timeout=10).status_code == 401

    # A branch photo: picked, shrunk in the browser, uploaded, shown, deleted.
    photo = tmp_path / "front.jpg"
    photo.write_bytes(jpeg(scene(3)))
    owner = stack.login(OWNER)
    profile = f"{stack.gateway}/api/branch-owner/v1/branches/{BRANCH}"
    if httpx.get(profile, headers=owner).status_code == 404:  # photos belong to a saved profile
        saved = httpx.put(
            profile, json={"name": "Demo Gym", "address": "Seoul", "lat": 37.5, "lon": 127.0}, headers=owner
        )
        assert saved.status_code == 201, saved.text
    page.goto(f"{stack.gateway}/console#profile")
    page.wait_for_selector("#photo-upload")
    page.set_input_files("#photo-file", str(photo))
    page.click("#photo-upload")
    page.wait_for_selector("#photo-status:has-text('1 photo(s) added')")
    thumb = page.locator("#photo-gallery li[id^='photo-'] img").first
    thumb.wait_for()
    deadline = time.monotonic() + 10
    while not page.evaluate(
        "(() => { const i = document.querySelector('#photo-gallery img'); return !!i && i.naturalWidth > 0; })()"
    ):
        assert time.monotonic() < deadline, "the uploaded photo was never drawn"
        time.sleep(0.1)
    [stored] = httpx.get(f"{stack.gateway}/api/branch-owner/v1/branches/{BRANCH}/photos", headers=owner).json()
    assert max(stored["width"], stored["height"]) <= 2048
    assert_accessible(page)
    screenshot(page, "console-profile-photos")
    page.locator(f"#photo-{stored['id']} button").click()
    page.wait_for_selector("#photos-empty")
    assert httpx.get(f"{stack.gateway}/api/branch-owner/v1/branches/{BRANCH}/photos", headers=owner).json() == []


def test_owner_approves_a_helpers_payout(stack, open_page):
    owner = stack.login(OWNER)
    helper_id, helper = make_helper(stack)
    with httpx.Client(base_url=stack.gateway, timeout=15) as client:
        task_type = {"category": "laundry", "title": "Fold towels", "reward_krw": 5000, "daily_limit": 20}
        assert client.put(f"/api/helper/v1/branches/{BRANCH}/task-types/fold", json=task_type, headers=owner).is_success
        assert client.put(f"/api/helper/v1/branches/{BRANCH}/helpers/{helper_id}", headers=owner).status_code == 204
        form = {"branch_id": BRANCH, "task_type": "fold", "client_key": uuid.uuid4().hex}
        files = [("photos", ("towels.jpg", jpeg(scene(11)), "image/jpeg"))]
        submitted = client.post("/api/helper/v1/tasks", data=form, files=files, headers=helper)
        assert submitted.status_code == 201, submitted.text
        task_id = submitted.json()["id"]
        decision = f"/api/branch-owner/v1/branches/{BRANCH}/queue/{task_id}/decision"
        deadline = time.monotonic() + 30
        # With a reason: the task judge may have refused the photo, and approving overrules it.
        approval = {"decision": "approve", "reason": "towels checked in person"}
        while (answer := client.post(decision, json=approval, headers=owner)).status_code == 404:
            assert time.monotonic() < deadline, "the task never reached the queue"
            time.sleep(0.3)
        assert answer.status_code == 200, answer.text
        while client.get("/api/helper/v1/me/balance", headers=helper).json()["balance_krw"] < 5000:
            assert time.monotonic() < deadline, "the reward never reached the balance"
            time.sleep(0.3)
        asked = client.post(
            "/api/helper/v1/me/payouts", json={"amount_krw": 4000, "client_key": uuid.uuid4().hex}, headers=helper
        )
        assert asked.status_code == 201, asked.text
        payout_id = asked.json()["id"]

    page = open_page(locale="ko-KR")
    sign_in(page, stack.gateway, "console", OWNER)
    page.goto(f"{stack.gateway}/console#payouts")
    row = page.locator(f"#payout-{payout_id}")
    row.wait_for()
    assert "5,000" in row.inner_text()  # earned at this branch, beside the request
    assert_accessible(page)
    screenshot(page, "console-payouts")
    row.locator("input").fill("수고하셨습니다")
    row.locator("button.approve").click()
    row.wait_for(state="detached")  # no longer waiting for the owner
    [mine] = httpx.get(f"{stack.gateway}/api/helper/v1/me/payouts", headers=helper).json()
    assert (mine["status"], mine["note"]) == ("approved", "수고하셨습니다")
