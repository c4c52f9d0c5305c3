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
