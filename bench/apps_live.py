"""Live runs in the member app, in Debian's chromium against ``smartgym up`` + ``smartgym
demo`` (through the gateway, as a phone reaches it):

* live_point_to_friend_screen_p95_ms — the runner's phone learns a position (Chromium's
  geolocation override moved along a recorded course; the app's watchPosition callback)
  → the friend's map marker moved to it (the watcher page's marker update). Both moments
  are User Timing marks taken in the browsers (``smartgym:run-fix`` and
  ``smartgym:watch-move``, keyed by the point's device time), on one machine clock.
  Baseline in the same run: the same positions reaching a plain WebSocket client (Python,
  watching the same run through the gateway) — the server's share of the path.
* offline_points_lost — a second runner goes through tunnels (the browser context set
  offline for a few seconds, several times): points the phone recorded that the finished
  run does not hold (must be 0), and points it holds twice (must be 0).

    python bench/apps_live.py [--points 150] [--hz 3] [--tunnels 3] [--gateway URL]

``--gateway`` measures a platform already running (``smartgym up`` + ``smartgym demo``)
instead of starting one (which takes a minute or two).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the repo root

import httpx

from bench._common import emit, fail, machine, progress, spread_cells, summary, table
from tests.support.browser import launch
from tests.support.liverun import Runner, Walker, befriend, geo_options, new_runner, recorded_course
from tests.support.webstack import web_stack

PHONE = {"width": 390, "height": 844}
# The app's User Timing marks as (device time of the point, epoch ms of the moment).
MARKS = "performance.getEntriesByName('{}').map(m => [m.detail.t, performance.timeOrigin + m.startTime])"
FIX = MARKS.format("smartgym:run-fix")
MOVE = MARKS.format("smartgym:watch-move")


def sign_in(page: Any, gateway: str, email: str) -> None:
    from smartgym.demo import PASSWORD

    page.goto(f"{gateway}/app")
    page.fill("#auth-email", email)
    page.fill("#auth-password", PASSWORD)
    page.click("#auth-submit")
    page.wait_for_selector("#logout")


def until(check: Any, *, timeout: float, every: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if every is not None:
            every()
        time.sleep(0.25)
    raise TimeoutError("timed out")


def start_run(page: Any, gateway: str, runner: Runner, walker: Walker) -> str:
    sign_in(page, gateway, runner.email)
    page.goto(f"{gateway}/app#run")
    page.click("#run-start")
    run_id: str = until(lambda: page.get_attribute("#run-panel", "data-run-id"), timeout=20, every=walker.fix)
    return run_id


def finish(page: Any) -> None:
    until(lambda: page.get_attribute("#run-queue", "data-n") == "0", timeout=20)
    page.click("#run-finish")
    until(lambda: page.get_attribute("#run-panel", "data-state") == "finished", timeout=20)


class SocketWatcher:
    """The baseline: a WebSocket client in its own thread watching the run through the
    gateway, noting when each position arrives (epoch ms)."""

    def __init__(self, gateway: str, run_id: str, token: str) -> None:
        self.url = gateway.replace("http", "ws", 1) + f"/api/live/ws/runs/{run_id}/watch?access_token={token}"
        self.arrivals: dict[float, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        from websockets.asyncio.client import connect

        async with connect(self.url, open_timeout=10) as socket:
            while not self._stop.is_set():
                try:
                    frame = await asyncio.wait_for(socket.recv(), 0.5)
                except TimeoutError:
                    continue
                now = time.time() * 1000
                message = json.loads(frame)
                if message.get("type") == "position" and message.get("t") not in self.arrivals:
                    self.arrivals[message["t"]] = now

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def friend_latency(browser: Any, gateway: str, points: int, hz: float) -> dict[str, Any]:
    course = recorded_course(seed=5)
    runner, friend = new_runner(gateway, "bench-runner"), new_runner(gateway, "bench-friend")
    befriend(gateway, runner, friend)
    with ExitStack() as contexts:
        runner_context = browser.new_context(viewport=PHONE, **geo_options(course))
        contexts.callback(runner_context.close)
        friend_context = browser.new_context(viewport=PHONE)
        contexts.callback(friend_context.close)
        runner_page, friend_page = runner_context.new_page(), friend_context.new_page()
        walker = Walker(runner_context, course, 3.0 / hz)  # a 3 m/s runner, sampled at `hz`
        run_id = start_run(runner_page, gateway, runner, walker)
        sign_in(friend_page, gateway, friend.email)
        friend_page.goto(f"{gateway}/app#watch/{run_id}")
        friend_page.wait_for_selector("#watch[data-live='open']", timeout=20_000)
        baseline = SocketWatcher(gateway, run_id, friend.headers["authorization"].split()[1])
        time.sleep(1.0)
        before = {t for t, _ in runner_page.evaluate(FIX)}  # from before the friend watched
        progress(f"moving the runner {points} times at {hz} Hz")
        period = 1.0 / hz
        next_at = time.monotonic()
        for _ in range(points):
            walker.fix()
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))
        time.sleep(2.0)
        baseline.close()
        fixes = {t: at for t, at in runner_page.evaluate(FIX) if t not in before}
        moves = dict(friend_page.evaluate(MOVE))
        finish(runner_page)
    screen = [moves[t] - at for t, at in fixes.items() if t in moves]
    server = [baseline.arrivals[t] - at for t, at in fixes.items() if t in baseline.arrivals]
    return {"fixes": len(fixes), "screen": screen, "server": server, "unseen": len(fixes) - len(screen)}


def tunnels(browser: Any, gateway: str, count: int) -> dict[str, int]:
    course = recorded_course(seed=7)
    runner = new_runner(gateway, "bench-tunnel")
    context = browser.new_context(viewport=PHONE, **geo_options(course))
    try:
        page = context.new_page()
        walker = Walker(context, course, 1.0)
        run_id = start_run(page, gateway, runner, walker)
        buffered = 0
        for tunnel in range(count):
            progress(f"tunnel {tunnel + 1} of {count}")
            for _ in range(8):  # two seconds of daylight
                walker.fix()
                time.sleep(0.25)
            context.set_offline(True)
            for _ in range(16):  # four seconds underground
                walker.fix()
                time.sleep(0.25)
            buffered = max(buffered, int(page.get_attribute("#run-queue", "data-n") or 0))
            context.set_offline(False)
        for _ in range(8):
            walker.fix()
            time.sleep(0.25)
        finish(page)
        fixes = page.evaluate(FIX)
    finally:
        context.close()
    detail = httpx.get(f"{gateway}/api/running/v1/runs/{run_id}", headers=runner.headers, timeout=15).json()
    stored = [row[0] for row in detail["track"]]
    recorded = {t for t, _ in fixes}

    def longest_gap_ms(times: list[float]) -> int:
        return round(max((b - a for a, b in itertools.pairwise(sorted(times))), default=0.0) * 1000)

    return {
        "recorded": len(recorded),
        "stored": len(stored),
        "lost": len(recorded - set(stored)),
        "duplicated": len(stored) - len(set(stored)),
        "unexpected": len(set(stored) - recorded),
        "most_buffered": buffered,
        # A loaded machine can stall the phone's own recording; a hole only in the store is a loss.
        "recorded_gap_ms": longest_gap_ms(list(recorded)),
        "stored_gap_ms": longest_gap_ms(stored),
    }


def measure(playwright: Any, gateway: str, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, int]]:
    browser = launch(playwright)
    try:
        progress("runner → friend's screen")
        latency = friend_latency(browser, gateway, args.points, args.hz)
        progress("tunnels")
        offline = tunnels(browser, gateway, args.tunnels)
    finally:
        browser.close()
    return latency, offline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=150)
    parser.add_argument("--hz", type=float, default=3.0)
    parser.add_argument("--tunnels", type=int, default=3)
    parser.add_argument("--gateway", default="")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        if args.gateway:
            latency, offline = measure(playwright, args.gateway, args)
        else:
            with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
                progress("starting smartgym up + demo")
                with web_stack(Path(tmp)) as stack:
                    latency, offline = measure(playwright, stack.gateway, args)

    screen, server = summary(latency["screen"]), summary(latency["server"])
    print(f"Live runs in chromium — {machine()}; the browsers, the platform and this script share the CPUs")
    table(
        "runner's fix → position shown (ms)",
        ["what", "n", "p50", "p95", "p99", "max"],
        [
            ["friend's map marker moved (browser → browser)", *spread_cells(screen), f"{screen['max']:.1f}"],
            ["  baseline: a socket client watching (server path)", *spread_cells(server), f"{server['max']:.1f}"],
        ],
    )
    print(f"\nfixes recorded {latency['fixes']}; not shown to the friend {latency['unseen']}")
    table("tunnels", list(offline), [list(offline.values())])
    if offline["lost"] or offline["duplicated"] or offline["unexpected"]:
        fail(f"offline run: {offline['lost']} lost, {offline['duplicated']} twice, {offline['unexpected']} unexpected")
    if len(latency["screen"]) < 100:
        fail(f"only {len(latency['screen'])} positions reached the friend's screen (want ≥100 for a p99)")
    emit(
        {
            "live_point_to_friend_screen_p95_ms": round(screen["p95"], 1),
            "live_point_to_friend_screen_p50_ms": round(screen["p50"], 1),
            "live_point_to_friend_screen_p99_ms": round(screen["p99"], 1),
            "live_point_to_friend_screen_n": int(screen["n"]),
            "live_point_to_socket_client_p95_ms": round(server["p95"], 1),
            "live_points_not_shown": latency["unseen"],
            "offline_points_lost": offline["lost"],
            "offline_points_duplicated": offline["duplicated"],
            "offline_points_recorded": offline["recorded"],
            "offline_stored_gap_ms": offline["stored_gap_ms"],
            "offline_recorded_gap_ms": offline["recorded_gap_ms"],
        }
    )


if __name__ == "__main__":
    main()
