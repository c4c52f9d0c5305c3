"""The operations dashboard in chromium: branches on a map (no tiles) and in a list with
live equipment health, fault acknowledgement, the fault timeline, live access events and
charts, and a gateway breaker seen opening when an upstream stops."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from gateway.app import create_app
from gateway.settings import GatewaySettings
from smartgym.demo import BRANCH, ENTRY_GATE, OPERATOR, OWNER
from smartgym.embedded import plan_overrides
from tests.support.browser import assert_accessible, screenshot, sign_in
from tests.support.threadserver import ThreadServer
from tests.web.test_console import set_mode

PROFILE = {
    "name": "Demo Gym Gangnam",
    "address": "Seoul, Gangnam-gu, Teheran-ro 1",
    "lat": 37.498,
    "lon": 127.028,
}


def test_operator_watches_branches_live_and_acknowledges_a_fault(stack, open_page):
    owner = stack.login(OWNER)
    current = httpx.get(f"{stack.gateway}/api/branch-owner/v1/branches/{BRANCH}", headers=owner)
    if current.status_code == 404:
        saved = httpx.put(f"{stack.gateway}/api/branch-owner/v1/branches/{BRANCH}", json=PROFILE, headers=owner)
        assert saved.is_success, saved.text
    page = open_page()
    sign_in(page, stack.gateway, "ops", OPERATOR)
    page.wait_for_selector(f"#branch-{BRANCH}[data-status='ok']", timeout=20_000)
    page.wait_for_selector("#live-state[data-state='open']")
    assert page.locator("#branch-map .leaflet-interactive").count() >= 1  # the marker, drawn without tiles
    device = "demo-treadmill-00007"
    set_mode(stack, device, "dead")
    try:
        page.wait_for_selector(f"#branch-{BRANCH}[data-status='down']", timeout=20_000)
        ack = page.locator(f"#open-faults button[data-ack='{device}']")
        ack.wait_for(timeout=10_000)
        assert_accessible(page)
        screenshot(page, "ops-overview-fault")
        ack.click()
        page.wait_for_selector(f"#open-faults li:has-text('{device}') .badge.ok")
    finally:
        set_mode(stack, device, "ok")
    page.wait_for_selector(f"#branch-{BRANCH}[data-status='ok']", timeout=20_000)
    page.goto(f"{stack.gateway}/ops#faults")
    page.wait_for_selector(f"#fault-timeline li:has-text('{device}')")
    page.wait_for_selector("#faults-chart canvas")
    assert_accessible(page)
    screenshot(page, "ops-faults")


def test_access_events_arrive_live_with_charts(stack, open_page):
    page = open_page()
    sign_in(page, stack.gateway, "ops", OPERATOR)
    page.goto(f"{stack.gateway}/ops#access")
    page.wait_for_selector("#entries-chart canvas")
    kiosk = httpx.post(f"{stack.gateway}/api/auth/devices/token", json=stack.kiosk, timeout=10).json()
    refused = httpx.post(
        f"{stack.gateway}/api/access/v1/gates/{ENTRY_GATE}/pass",
        json={"code": "not-a-pass-but-long-enough-to-try"},
        headers={"authorization": f"Bearer {kiosk['access_token']}"},
        timeout=10,
    )
    assert refused.status_code == 200, refused.text
    page.wait_for_selector("#access-rows tr:has-text('pass_invalid')", timeout=10_000)
    assert_accessible(page)
    screenshot(page, "ops-access")


def test_a_breaker_opens_when_an_upstream_stops(stack, open_page):
    search = FastAPI()

    async def suggest() -> dict:
        return {"suggestions": []}

    search.add_api_route("/v1/suggest", suggest)

    wiring = {key: value for key, value in plan_overrides("127.0.0.1", stack.port_offset).items()}
    with ThreadServer(search) as upstream:
        fields = {key: value for key, value in wiring.items() if key in GatewaySettings.model_fields}
        settings = GatewaySettings(**{**fields, "search_url": upstream.url, "breaker_reset_timeout_s": 60})
        with ThreadServer(create_app(settings)) as gateway:
            operator = stack.login(OPERATOR)
            page = open_page()
            sign_in(page, gateway.url, "ops", OPERATOR)
            page.goto(f"{gateway.url}/ops#platform")
            assert httpx.get(f"{gateway.url}/api/search/v1/suggest", headers=operator).status_code == 200
            page.wait_for_selector("#breaker-search[data-state='closed']")
            upstream.stop()
            for _ in range(8):
                answer = httpx.get(f"{gateway.url}/api/search/v1/suggest", headers=operator)
                assert answer.status_code in (502, 503), answer.text
            page.wait_for_selector("#breaker-search[data-state='open']", timeout=10_000)
            assert page.locator("#breaker-search").inner_text().count("Retry in") == 1
            assert_accessible(page)
            screenshot(page, "ops-platform-breaker-open")
