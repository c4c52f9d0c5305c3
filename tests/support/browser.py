"""Driving Debian's chromium with Playwright for Python (tests and benchmarks): launch
flags that work on these machines, screenshots as artefacts, an axe-core check, signing in
to a staff screen."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from smartgym.demo import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "web"
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
# FACTS.md: what Debian's chromium needs here (no sandbox in a container, no GPU, no
# calls home).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TABLET = {"width": 1280, "height": 800}  # a 10-inch tablet in landscape


def require_chromium() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI needs /usr/bin/chromium (scripts/install dev installs it)")
        pytest.skip("no /usr/bin/chromium")
    return CHROMIUM


def launch(playwright: Any, *extra: str) -> Any:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra])


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def axe_violations(page: Any, *, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict[str, Any]]:
    """axe-core's WCAG 2 A/AA violations of these impacts on the page as it is now. The
    script is evaluated over the DevTools protocol, which the page's CSP does not govern."""
    if not AXE.exists():
        if os.environ.get("CI"):
            pytest.fail("CI needs web/node_modules/axe-core (scripts/install dev runs npm ci)")
        pytest.skip("axe-core not installed (cd web && npm ci)")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    result = page.evaluate(
        "async () => (await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa']}}))"
        ".violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))"
    )
    return [item for item in result if item["impact"] in impacts]


def assert_accessible(page: Any) -> None:
    violations = axe_violations(page)
    assert not violations, json.dumps(violations, indent=1, ensure_ascii=False)


def sign_in(page: Any, gateway: str, screen: str, email: str) -> None:
    page.goto(f"{gateway}/{screen}")
    page.fill("#login-email", email)
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#logout")
