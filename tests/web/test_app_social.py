"""Running with friends in chromium: two members become friends through the app by a
friend code sent as a link (no e-mail, no user id) and one watches the other's live run
from the friends screen; a reload on another tab mid-run goes on recording, every point
stored once; a member leaving a walk together is seen leaving by the others."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx

from tests.support.browser import assert_accessible
from tests.support.liverun import Walker, befriend, geo_options, new_runner, recorded_course
from tests.web.test_app import sign_in_app
from tests.web.test_app_run import TICK_S, start_running, until, wait_for_marker_moves, walk_together

COURSE = recorded_course()
PHONE = {"width": 390, "height": 844}


def test_two_members_become_friends_by_code_and_one_watches_the_others_run(stack, open_page):
    ana, bo = new_runner(stack.gateway, "ana"), new_runner(stack.gateway, "bo")
    runner = open_page(viewport=PHONE, **geo_options(COURSE))
    sign_in_app(runner, stack.gateway, ana.email)
    runner.goto(f"{stack.gateway}/app#friends")
    code = until(
        lambda: (
            re.fullmatch(r"[0-9A-Z]{5}-[0-9A-Z]{5}", runner.inner_text("#friends-code").strip())
            and runner.inner_text("#friends-code").strip()
        ),
        timeout=10,
        what="ana's friend code",
    )
    link = runner.get_attribute("#friends-code-link", "href")
    assert link.endswith(f"#friends/{code}")

    friend = open_page(locale="ko-KR", viewport=PHONE)
    sign_in_app(friend, stack.gateway, bo.email)
    friend.goto(f"{stack.gateway}/app#friends")
    friend.fill("#friends-add-code", "ZZZZZ-ZZZZZ")  # a code nobody has
    friend.click("#friends-add-go")
    friend.wait_for_selector("#friends-add-result:has-text('러너가 없습니다')")
    friend.goto(link)  # the link Ana sent: the code is filled in
    assert friend.input_value("#friends-add-code") == code
    friend.click("#friends-add-go")
    friend.wait_for_selector("#friends-add-result[data-status='requested']")
    friend.wait_for_selector(f"#friends-requested li[data-user='{ana.user_id}']")

    runner.click(f"#friends-incoming li[data-user='{bo.user_id}'] .friend-accept", timeout=10_000)
    runner.wait_for_selector(f"#friends-list li[data-user='{bo.user_id}']")
    friend.wait_for_selector(f"#friends-list li[data-user='{ana.user_id}']", timeout=10_000)
    assert_accessible(friend)

    # Ana runs; Bo's friends screen offers her live run within seconds.
    walker = Walker(runner.context, COURSE, 2.5)
    runner.goto(f"{stack.gateway}/app#run")
    runner.click("#run-start")
    run_id = until(
        lambda: runner.get_attribute("#run-panel", "data-run-id"), timeout=15, every=walker.fix, what="run id"
    )
    watch = f"#friends-list li[data-user='{ana.user_id}'] a.friend-watch"
    until(lambda: friend.locator(watch).count() > 0, timeout=15, every=walker.fix, what="the watch link")
    assert friend.get_attribute(watch, "href") == f"#watch/{run_id}"
    friend.click(watch)
    wait_for_marker_moves(friend, 3, walker=walker, what="ana's marker moving on bo's screen")
    runner.click("#run-finish")
    until(lambda: friend.get_attribute("#watch", "data-finished") == "true", timeout=15, what="bo told")

    # Removing takes a second tap, and ends the friendship for both.
    friend.goto(f"{stack.gateway}/app#friends")
    remove = f"#friends-list li[data-user='{ana.user_id}'] .friend-remove"
    friend.click(remove)
    assert friend.locator(f"#friends-list li[data-user='{ana.user_id}']").count() == 1
    friend.click(remove)
    friend.wait_for_selector(f"#friends-list li[data-user='{ana.user_id}']", state="detached")
    runner.goto(f"{stack.gateway}/app#friends")
    runner.wait_for_selector("#friends-list li.muted")
    assert runner.locator(f"#friends-list li[data-user='{bo.user_id}']").count() == 0


def test_a_reload_on_another_tab_mid_run_goes_on_recording_every_point_once(stack, open_page):
    runner, friend = new_runner(stack.gateway, "reload"), new_runner(stack.gateway, "reloadwatch")
    befriend(stack.gateway, runner, friend)
    page = open_page(viewport=PHONE, **geo_options(COURSE))
    walker = Walker(page.context, COURSE, 1.0)
    run_id = start_running(page, stack.gateway, runner.email, walker)
    watcher = open_page(viewport=PHONE)
    sign_in_app(watcher, stack.gateway, friend.email)
    watcher.goto(f"{stack.gateway}/app#watch/{run_id}")
    for _ in range(6):
        walker.fix()
        time.sleep(TICK_S)
    page.click("#tab-pass")  # the run goes on behind the entry pass
    page.wait_for_selector("#run-banner:not([hidden])")
    for _ in range(6):
        walker.fix()
        time.sleep(TICK_S)
    time.sleep(0.5)  # the last fix is in IndexedDB
    before = page.evaluate("performance.getEntriesByName('smartgym:run-fix').map(m => m.detail.t)")

    page.reload()
    page.wait_for_selector("#run-banner:not([hidden])", timeout=10_000)
    assert page.evaluate("location.hash") == "#pass"
    moves = int(watcher.get_attribute("#watch-where", "data-moves") or 0)
    for _ in range(10):
        walker.fix()
        time.sleep(TICK_S)
    # Still on the pass: the friend's marker keeps moving, so the points are flowing.
    until(
        lambda: int(watcher.get_attribute("#watch-where", "data-moves") or 0) >= moves + 5,
        timeout=15,
        every=walker.fix,
        what="points flowing after the reload",
    )
    assert page.evaluate("location.hash") == "#pass"
    after = page.evaluate("performance.getEntriesByName('smartgym:run-fix').map(m => m.detail.t)")
    assert after, "no fix after the reload"

    page.click("#run-banner-back")
    page.wait_for_selector("#run-panel")
    until(lambda: page.get_attribute("#run-queue", "data-n") == "0", timeout=15, what="the queue emptied")
    page.click("#run-finish")
    until(lambda: page.get_attribute("#run-panel", "data-state") == "finished", timeout=15, what="the finish")
    page.wait_for_selector("#run-banner", state="hidden")
    final = page.evaluate("performance.getEntriesByName('smartgym:run-fix').map(m => m.detail.t)")
    detail = httpx.get(f"{stack.gateway}/api/running/v1/runs/{run_id}", headers=runner.headers, timeout=10).json()
    stored = [row[0] for row in detail["track"]]
    assert len(stored) == len(set(stored)), "a point stored twice"
    assert stored == sorted(set(before) | set(final)), (len(stored), len(before), len(final))  # no gap


def test_a_member_leaving_a_walk_together_is_seen_leaving(stack, open_page):
    guest_runner, host, guest, walkers = walk_together(stack, open_page, ("stay", "leave"))

    def walk(*only: Any) -> None:
        for walker in only or walkers:
            walker.fix()

    until(lambda: host.locator("path.member-marker").count() == 1, timeout=20, every=walk, what="the guest's marker")
    until(lambda: host.get_attribute("#outing-status", "data-n") == "2", timeout=10, every=walk, what="two walking")

    guest.click("#outing-leave")
    host.wait_for_selector(f"#outing-left li[data-user='{guest_runner.user_id}']", timeout=10_000)
    assert "left the outing" in host.inner_text("#outing-left")
    assert host.locator("path.member-marker").count() == 0
    until(
        lambda: host.get_attribute("#outing-status", "data-n") == "1",
        timeout=10,
        every=lambda: walk(walkers[0]),
        what="the group down to one",
    )
    assert host.locator("path.member-marker").count() == 0
    assert host.locator("path.runner-marker").count() == 1  # the host is still out
    assert_accessible(host)
