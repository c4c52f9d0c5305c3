"""The screens in a real browser: Debian's chromium driven by Playwright for Python, against
``smartgym up`` plus ``smartgym demo`` (a branch with gates, an owner, an operator, members,
a kiosk and simulated equipment), started once for the whole module set.

Every page a test opens is screenshotted into ``test-artifacts/web/`` (gitignored) when the
test ends, and fails the test if the browser reported a Content-Security-Policy violation
or an uncaught error."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import ARTIFACTS, TABLET, launch, require_chromium
from tests.support.webstack import Stack, web_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_chromium()
    with web_stack(tmp_path_factory.mktemp("web-stack")) as running:
        yield running


# Per module, not per session: Playwright's sync API keeps an event loop running in this
# thread while it is open, and asyncio tests collected after the browser tests could not
# start theirs.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    chromium = launch(playwright)
    yield chromium
    chromium.close()


class PageWatch:
    """What the browser complained about on a page: CSP violations and uncaught errors."""

    def __init__(self, page: Any) -> None:
        self.problems: list[str] = []
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        text = message.text
        if message.type == "error" and ("Content Security Policy" in text or "Refused to" in text):
            self.problems.append(f"csp: {text}")


@pytest.fixture
def open_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """open_page(locale=..., viewport=...) -> a page in a fresh context; screenshotted at
    the end as test-artifacts/web/<test>-<n>.png."""
    opened: list[tuple[Any, Any, PageWatch]] = []

    def open_one(*, locale: str = "en-US", viewport: dict[str, int] | None = None, **options: Any) -> Any:
        context = browser.new_context(locale=locale, viewport=viewport or TABLET, **options)
        page = context.new_page()
        opened.append((context, page, PageWatch(page)))
        return page

    yield open_one
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    for index, (context, page, watch) in enumerate(opened):
        with_suffix = f"-{index}" if index else ""
        with contextlib.suppress(Exception):
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}{with_suffix}.png"), full_page=True)
        problems.extend(watch.problems)
        context.close()
    assert not problems, problems
