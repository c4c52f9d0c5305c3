"""Live runs in the member app, in chromium: each phone's position is Chromium's
geolocation override moved along a recorded course (fast, so a test takes seconds). A
friend watches the runner's marker move, a race between two phones ends with the right
winner, and a run whose network is cut keeps its points and stores them once each."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx

from tests.support.browser import assert_accessible
from tests.support.liverun import Runner, Walker, befriend, geo_options, new_runner, recorded_course
from tests.web.test_app import sign_in_app

COURSE = recorded_course()
TICK_S = 0.25


def until(check: Any, *, timeout: float, every: Any = None, what: str = "") -> Any:
    """Poll ``check`` (calling ``every`` between tries, e.g. a step along the course)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if every is not None:
            every()
        time.sleep(TICK_S)
    raise AssertionError(f"timed out waiting for {what or check}")


def start_running(page: Any, gateway: str, email: str, walker: Walker, hash_: str = "run") -> str:
    sign_in_app(page, gateway, email)
    page.goto(f"{gateway}/app#{hash_}")
    page.click("#run-start")
    return until(lambda: page.get_attribute("#run-panel", "data-run-id"), timeout=15, every=walker.fix, what="run id")


def marker(page: Any) -> str | None:
    return page.get_attribute("path.runner-marker", "d") if page.locator("path.runner-marker").count() else None


def wait_for_marker_moves(page: Any, moves: int, *, walker: Walker, what: str) -> list[str]:
    """Walk the course until the runner's marker on ``page`` has taken ``moves`` places."""
    seen: list[str] = []

    def moved() -> bool:
        where = marker(page)
        if where and (not seen or seen[-1] != where):
            seen.append(where)
        return len(seen) >= moves

    until(moved, timeout=20, every=walker.fix, what=what)
    return seen


def test_a_friend_and_a_link_holder_watch_the_runner_move(stack, open_page):
    runner, friend = new_runner(stack.gateway), new_runner(stack.gateway, "friend")
    befriend(stack.gateway, runner, friend)
    page = open_page(viewport={"width": 390, "height": 844}, **geo_options(COURSE))
    walker = Walker(page.context, COURSE, 2.5)
    run_id = start_running(page, stack.gateway, runner.email, walker)

    watcher = open_page(locale="ko-KR", viewport={"width": 390, "height": 844})
    sign_in_app(watcher, stack.gateway, friend.email)
    watcher.goto(f"{stack.gateway}/app#watch/{run_id}")
    wait_for_marker_moves(watcher, 4, walker=walker, what="the marker moving on the friend's screen")
    assert int(watcher.get_attribute("#watch-where", "data-moves") or 0) >= 4
    assert_accessible(watcher)

    page.click("#run-share")
    link = page.get_attribute("#run-share-link", "href")
    assert link
    assert "#shared/" in link
    stranger = open_page()  # no account: the link is the credential
    stranger.goto(link)
    first = until(lambda: marker(stranger), timeout=15, every=walker.fix, what="a marker for the link holder")
    until(lambda: marker(stranger) not in (None, first), timeout=15, every=walker.fix, what="it moving")
    assert_accessible(page)

    page.click("#run-pause")  # a red light: the server pauses the run, then resumes it
    until(lambda: page.get_attribute("#run-panel", "data-server-paused") == "true", timeout=10, what="paused")
    page.click("#run-resume")
    until(lambda: page.get_attribute("#run-panel", "data-server-paused") == "false", timeout=10, what="resumed")
    page.click("#run-finish")
    until(lambda: page.get_attribute("#run-panel", "data-state") == "finished", timeout=15, what="the finish")
    until(lambda: watcher.get_attribute("#watch", "data-finished") == "true", timeout=10, what="the friend told")
    assert "끝났습니다" in watcher.inner_text("#watch-state")


def test_a_race_between_two_phones_ends_with_the_faster_one_winning(stack, open_page):
    fast, slow = new_runner(stack.gateway, "fast"), new_runner(stack.gateway, "slow")
    befriend(stack.gateway, fast, slow)
    host = open_page(viewport={"width": 390, "height": 844}, **geo_options(COURSE))
    guest = open_page(locale="ko-KR", viewport={"width": 390, "height": 844}, **geo_options(COURSE))
    sign_in_app(host, stack.gateway, fast.email)
    host.goto(f"{stack.gateway}/app#race")
    host.fill("#race-target", "100")
    host.check(f"input[data-friend='{slow.user_id}']")
    host.click("#race-create")
    where = until(lambda: "#race/" in host.evaluate("location.hash") and host.evaluate("location.hash"), timeout=10)
    race_id = where.rsplit("/", 1)[1]

    sign_in_app(guest, stack.gateway, slow.email)
    guest.goto(f"{stack.gateway}/app#race/{race_id}")
    guest.click("#race-join")
    host.click("#race-start")
    for page in (host, guest):
        page.wait_for_selector("#run-start", timeout=10_000)
        page.click("#run-start")
    # Ten metres a second against four (the server allows 12): ~10 s past the countdown.
    walkers = [Walker(host.context, COURSE, 10 * TICK_S), Walker(guest.context, COURSE, 4 * TICK_S)]

    def both_move() -> None:
        for walker in walkers:
            walker.fix()

    def fast_finished() -> bool:
        row = host.locator(f"#race-board tr[data-user='{fast.user_id}']")
        return row.count() > 0 and ("finished" in row.inner_text())

    until(fast_finished, timeout=40, every=both_move, what="the faster runner crossing the line")
    standings = guest.locator("#race-board tbody tr").all_inner_texts()
    assert standings
    assert "km" in standings[0]
    guest.click("#run-finish")  # the slower one gives up: the race is over for everyone
    for page in (host, guest):
        page.wait_for_selector("#race-winner", timeout=15_000)
        assert page.get_attribute("#race-winner", "data-user") == fast.user_id
    assert_accessible(guest)


def test_a_run_through_a_tunnel_keeps_every_point_once(stack, open_page):
    runner = new_runner(stack.gateway, "tunnel")
    page = open_page(viewport={"width": 390, "height": 844}, **geo_options(COURSE))
    walker = Walker(page.context, COURSE, 1.0)
    run_id = start_running(page, stack.gateway, runner.email, walker)
    for _ in range(8):
        walker.fix()
        time.sleep(TICK_S)
    entered = page.evaluate("performance.now()")
    page.context.set_offline(True)  # the tunnel
    until(lambda: page.get_attribute("#run-panel", "data-state") == "offline", timeout=5, what="offline shown")
    for _ in range(16):
        walker.fix()
        time.sleep(TICK_S)
    waiting = int(page.get_attribute("#run-queue", "data-n") or 0)
    assert waiting >= 16, waiting
    left = page.evaluate("performance.now()")
    page.context.set_offline(False)
    for _ in range(8):
        walker.fix()
        time.sleep(TICK_S)
    # Every point is acknowledged once the server has stored it (a flush, up to 5 s).
    until(lambda: page.get_attribute("#run-queue", "data-n") == "0", timeout=15, what="the queue emptied")
    page.click("#run-finish")
    until(lambda: page.get_attribute("#run-panel", "data-state") == "finished", timeout=15, what="the finish")

    fixes = page.evaluate("performance.getEntriesByName('smartgym:run-fix').map(m => [m.detail.t, m.startTime])")
    detail = httpx.get(f"{stack.gateway}/api/running/v1/runs/{run_id}", headers=runner.headers, timeout=10).json()
    stored = [row[0] for row in detail["track"]]
    assert len(stored) == len(set(stored)), "a point stored twice"
    assert stored == sorted(t for t, _ in fixes), (len(stored), len(fixes))  # none lost, none added
    underground = [t for t, at in fixes if entered <= at <= left]
    assert len(underground) >= 12, underground  # the tunnel's points are in the track: no hole


def test_two_friends_walking_together_see_each_other(stack, open_page):
    _, host, guest, walkers = walk_together(stack, open_page, ("host", "guest"))

    def walk() -> None:
        for walker in walkers:
            walker.fix()

    for page in (host, guest):  # each sees the other's marker (the group's snapshot, every few seconds)
        until(lambda page=page: page.locator("path.member-marker").count() > 0, timeout=20, every=walk)
    assert "2" in host.inner_text("#outing-status")
    assert_accessible(guest)


def test_a_socket_gone_silent_is_given_up_and_the_run_resumes_without_loss(stack, open_page):
    # A tunnel the browser does not notice: still "online", the socket open, nothing
    # getting through either way. The app gives up on it after 8 s without an answer.
    runner = new_runner(stack.gateway, "silent")
    page = open_page(viewport={"width": 390, "height": 844}, **geo_options(COURSE))
    sockets: list[Any] = []
    silent = {"on": False}

    def relay(route: Any) -> None:
        server = route.connect_to_server()
        first = not sockets
        sockets.append(route)
        route.on_message(lambda message: None if first and silent["on"] else server.send(message))
        server.on_message(lambda message: None if first and silent["on"] else route.send(message))

    page.context.route_web_socket(re.compile(r"/api/live/ws/runs"), relay)
    walker = Walker(page.context, COURSE, 1.0)
    run_id = start_running(page, stack.gateway, runner.email, walker)
    silent["on"] = True
    until(lambda: len(sockets) > 1, timeout=20, every=walker.fix, what="a second socket")
    for _ in range(8):
        walker.fix()
        time.sleep(TICK_S)
    until(lambda: page.get_attribute("#run-queue", "data-n") == "0", timeout=15, what="the queue emptied")
    page.click("#run-finish")
    until(lambda: page.get_attribute("#run-panel", "data-state") == "finished", timeout=15, what="the finish")
    fixes = page.evaluate("performance.getEntriesByName('smartgym:run-fix').map(m => m.detail.t)")
    detail = httpx.get(f"{stack.gateway}/api/running/v1/runs/{run_id}", headers=runner.headers, timeout=10).json()
    stored = [row[0] for row in detail["track"]]
    assert stored == sorted(fixes), (len(stored), len(fixes))


def walk_together(stack: Any, open_page: Any, prefixes: tuple[str, str]) -> tuple[Runner, Any, Any, list[Walker]]:
    """Two friends' phones on a walk together: the host creates and begins it, the guest
    accepts, both join; returns (guest runner, host page, guest page, walkers)."""
    host_runner, guest_runner = new_runner(stack.gateway, prefixes[0]), new_runner(stack.gateway, prefixes[1])
    befriend(stack.gateway, host_runner, guest_runner)
    host = open_page(viewport={"width": 390, "height": 844}, **geo_options(COURSE))
    guest = open_page(viewport={"width": 390, "height": 844}, **geo_options(COURSE[150:]))
    sign_in_app(host, stack.gateway, host_runner.email)
    host.goto(f"{stack.gateway}/app#outing")
    host.check(f"input[data-friend='{guest_runner.user_id}']")
    host.click("#outing-create")
    host.wait_for_selector("#outing-list .outing-begin")
    host.click("#outing-list .outing-begin")
    sign_in_app(guest, stack.gateway, guest_runner.email)
    guest.goto(f"{stack.gateway}/app#outing")
    guest.click("#outing-list .outing-accept")
    for page in (guest, host):
        page.click("#outing-list .outing-join")
        page.wait_for_selector("#outing-map")
    walkers = [Walker(host.context, COURSE, 1.5), Walker(guest.context, COURSE[150:], 1.5)]
    return guest_runner, host, guest, walkers
