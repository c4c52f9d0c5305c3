"""The staff screens in Debian's chromium against ``smartgym up`` + ``smartgym demo``:

* kiosk_frame_to_decision_p95_ms — the kiosk grabs a camera frame (Chromium's fake camera
  playing a video of an enrolled member) → the decision drawn on screen; the member is
  granted, then refused as already inside, again and again (every decision a full face
  identification and authorisation through the gateway).
* console_first_paint_ms — a signed-in owner opens /console on a cold browser context:
  first contentful paint, and the time until today's figures are on screen.
* dashboard_live_update_ms — a treadmill's health change as monitoring recorded it → the
  operations dashboard's branch list repainted (over SSE through the gateway); also the
  treadmill killed → on screen, which includes fault detection (pings every second here).
* bundle_kb — gzip of every JS and CSS file the screens ship (web/dist/assets).

    python bench/screens_staff.py [--decisions 40] [--changes 30] [--paints 15]
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the repo root

import httpx

from bench._common import emit, machine, progress, summary, table
from smartgym.demo import BRANCH, ENTRY_GATE, MEMBERS, OPERATOR, OWNER
from tests.support.browser import TABLET, launch
from tests.support.webstack import Stack, web_stack
from tests.web.test_kiosk import enrol, photo_video

ASSETS = Path(__file__).resolve().parents[1] / "web" / "dist" / "assets"


def bundle() -> tuple[float, list[tuple[str, float, float]]]:
    rows = []
    for path in sorted(ASSETS.iterdir()):
        if path.suffix in (".js", ".css"):
            raw = path.read_bytes()
            rows.append((path.name, len(raw) / 1024, len(gzip.compress(raw, 9)) / 1024))
    return sum(row[2] for row in rows), rows


def kiosk_decisions(playwright, stack: Stack, workdir: Path, count: int) -> tuple[list[float], list[float], list[dict]]:
    photo = stack.photos / "member1.jpg"
    enrol(stack, MEMBERS[0], photo)
    video = photo_video(photo, workdir / "member1.y4m")
    chromium = launch(
        playwright,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    )
    try:
        context = chromium.new_context(viewport=TABLET, permissions=["camera"])
        context.add_init_script("localStorage.setItem('smartgym.kiosk.hold_ms', '200')")
        page = context.new_page()
        page.goto(f"{stack.gateway}/kiosk")
        page.fill("#kiosk-client-id", stack.kiosk["client_id"])
        page.fill("#kiosk-client-secret", stack.kiosk["client_secret"])
        page.fill("#kiosk-gate", ENTRY_GATE)
        page.click("#kiosk-start")
        # The first grant waits for access to learn the new face (an event): not timed.
        page.wait_for_selector("#reason[data-reason='granted']", timeout=60_000)
        page.evaluate("window.kioskLatencies = []; window.kioskServerMs = []; window.kioskStages = []")
        deadline = time.monotonic() + 30 + count * 3
        while page.evaluate("window.kioskLatencies.length") < count:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        totals = list(page.evaluate("window.kioskLatencies"))[:count]
        stages = list(page.evaluate("window.kioskStages || []"))[:count]
        return totals, list(page.evaluate("window.kioskServerMs || []"))[:count], stages
    finally:
        chromium.close()


STAGES = (
    ("browser: grab + JPEG encode", lambda s: s.get("encode")),
    ("browser: QR search (beside the request)", lambda s: s.get("qr")),
    ("frame size sent (kB)", lambda s: s["bytes"] / 1024 if "bytes" in s else None),
    ("capture → request sent (resource timing)", lambda s: s.get("sent")),
    ("capture → first byte of the answer", lambda s: s.get("first_byte")),
    ("capture → answer handled in the page", lambda s: s.get("fetched")),
    ("access: request in → decision", lambda s: s.get("server")),
    ("  access → facemodel call", lambda s: (s.get("timings") or {}).get("facemodel_call")),
    ("    facemodel: decode", lambda s: (s.get("timings") or {}).get("decode")),
    ("    facemodel: detect", lambda s: (s.get("timings") or {}).get("detect")),
    ("    facemodel: embed", lambda s: (s.get("timings") or {}).get("embed")),
    (
        "network + gateway (answer - access)",
        lambda s: s["fetched"] - s["server"] if "fetched" in s and s.get("server") is not None else None,
    ),
    ("answer → decision painted", lambda s: s["total"] - s["fetched"] if "fetched" in s else None),
)


def stage_rows(stages: list[dict]) -> list[list[object]]:
    rows: list[list[object]] = []
    for name, pick in STAGES:
        values = [float(v) for v in (pick(stage) for stage in stages) if v is not None]
        if values:
            figures = summary(values)
            rows.append([name, len(values), f"{figures['p50']:.1f}", f"{figures['p95']:.1f}"])
    return rows


def console_paints(browser, stack: Stack, count: int) -> tuple[list[float], list[float]]:
    token = stack.login(OWNER)["authorization"].partition(" ")[2]
    paints, ready = [], []
    for _ in range(count):
        context = browser.new_context(viewport=TABLET)
        context.add_init_script(f"sessionStorage.setItem('smartgym.console', '{token}')")
        page = context.new_page()
        page.goto(f"{stack.gateway}/console")
        page.wait_for_selector("#entries-today:not(:has-text('…'))")
        ready.append(page.evaluate("performance.now()"))
        paint = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null")
        if paint is not None:
            paints.append(paint)
        context.close()
    return paints, ready


def dashboard_updates(browser, stack: Stack, count: int) -> tuple[list[float], list[float], int]:
    token = stack.login(OPERATOR)["authorization"].partition(" ")[2]
    context = browser.new_context(viewport=TABLET)
    context.add_init_script(f"sessionStorage.setItem('smartgym.ops', '{token}')")
    page = context.new_page()
    page.goto(f"{stack.gateway}/ops")
    page.wait_for_selector("#live-state[data-state='open']")
    page.wait_for_selector(f"#branch-{BRANCH}[data-status='ok']", timeout=30_000)
    lags, detected, missed = [], [], 0
    device = "demo-treadmill-00011"
    with httpx.Client(timeout=5) as control:
        for index in range(count):
            mode, health = ("dead", "faulty") if index % 2 == 0 else ("ok", "ok")
            started = time.monotonic()
            control.post(f"{stack.control}/devices/{device}/mode", json={"mode": mode}).raise_for_status()
            try:
                # A selector, not wait_for_function: the page's CSP forbids evaluating strings.
                page.wait_for_selector(f"body[data-last-change='{device}:{health}']", timeout=20_000)
            except Exception as exc:  # a missed update is counted, the run goes on
                missed += 1
                progress(f"update {index} not seen: {str(exc).splitlines()[0]}")
                continue
            detected.append((time.monotonic() - started) * 1000)
            lags.append(float(page.evaluate("Number(document.body.dataset.lastChangeLagMs)")))
        control.post(f"{stack.control}/devices/{device}/mode", json={"mode": "ok"})
    context.close()
    return lags, detected, missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=40)
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--paints", type=int, default=15)
    parser.add_argument(
        "--only-kiosk", action="store_true", help="measure the kiosk alone (quicker, while tuning the decision path)"
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    total_kb, files = bundle()
    with tempfile.TemporaryDirectory(prefix="bench-screens-") as tmp, sync_playwright() as playwright:
        workdir = Path(tmp)
        progress("starting smartgym up + demo")
        with web_stack(workdir) as stack:
            progress("kiosk decisions")
            decisions, server, stages = kiosk_decisions(playwright, stack, workdir, args.decisions)
            paints: list[float] = []
            ready: list[float] = []
            lags: list[float] = []
            detected: list[float] = []
            missed = 0
            if not args.only_kiosk:
                browser = launch(playwright)
                try:
                    progress("console first paints")
                    paints, ready = console_paints(browser, stack, args.paints)
                    progress("dashboard live updates")
                    lags, detected, missed = dashboard_updates(browser, stack, args.changes)
                finally:
                    browser.close()

    def row(name: str, values: list[float]) -> list[object]:
        figures = summary(values)
        p99 = f"{figures['p99']:.0f}" if len(values) >= 100 else "n<100"
        return [name, len(values), f"{figures['p50']:.0f}", f"{figures['p95']:.0f}", p99, f"{figures['max']:.0f}"]

    print(f"Staff screens in chromium — {machine()}")
    table("bundle (web/dist/assets)", ["file", "kB", "kB gzip"], [[n, f"{r:.1f}", f"{g:.1f}"] for n, r, g in files])
    table(
        "latencies (ms)",
        ["what", "n", "p50", "p95", "p99", "max"],
        [
            row("kiosk frame → decision shown", decisions),
            row("  of which access's own decision (baseline)", server),
            row("console first contentful paint", paints),
            row("console signed in → today's figures", ready),
            row("dashboard change recorded → on screen", lags),
            row("treadmill killed/revived → on screen", detected),
        ],
    )
    table(
        "kiosk decision, where the time goes (ms; p50 / p95 of each stage)",
        ["stage", "n", "p50", "p95"],
        stage_rows(stages),
    )
    print(
        f"\ndashboard updates missed: {missed} of {args.changes}; kiosk decisions: {len(decisions)} of {args.decisions}"
    )
    emit(
        {
            "kiosk_frame_to_decision_p95_ms": round(summary(decisions)["p95"], 1),
            "kiosk_decisions": len(decisions),
            "kiosk_server_decision_p95_ms": round(summary(server)["p95"], 1),
            "console_first_paint_ms": round(statistics.median(paints), 1) if paints else None,
            "console_ready_p50_ms": round(statistics.median(ready), 1) if ready else None,
            "dashboard_live_update_ms": round(summary(lags)["p95"], 1) if lags else None,
            "dashboard_kill_to_screen_p50_ms": round(statistics.median(detected), 1) if detected else None,
            "dashboard_updates_missed": missed,
            "bundle_kb": round(total_kb, 1),
        }
    )


if __name__ == "__main__":
    main()
