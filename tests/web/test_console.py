"""The branch-owner console in chromium, against the demo gym."""

from __future__ import annotations

from smartgym.demo import OWNER
from tests.support.browser import assert_accessible, sign_in


def test_owner_signs_in_and_sees_today(stack, open_page):
    page = open_page()
    sign_in(page, stack.gateway, "console", OWNER)
    page.wait_for_selector("#occupancy:not(:has-text('…'))")
    assert page.locator("#branch-picker").input_value() == "demo-gym"
    assert_accessible(page)
