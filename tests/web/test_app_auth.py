"""Signing in to the member app by phone as well as email, with the input checked on the
page and the server's refusals shown; and the identity check by card started from the
account screen, through the wrapper's card reader and auth's card partner (the local
partner simulator, whose card tokens decide the verdict)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from smartgym.demo import BRANCH, OWNER, PASSWORD
from tests.support.browser import assert_accessible

PHONE = {"width": 390, "height": 844}


def auth_calls(page) -> list[str]:
    """Every request the page makes to auth, as it makes them."""
    calls: list[str] = []
    page.on("request", lambda request: calls.append(request.url) if "/api/auth/" in request.url else None)
    return calls


def test_a_member_signs_up_with_a_korean_number_and_signs_in_with_it_written_another_way(stack, open_page):
    digits = f"{random.randrange(10**8):08d}"
    page = open_page(locale="ko-KR", viewport=PHONE)
    page.goto(f"{stack.gateway}/app")
    page.click("#auth-toggle")
    page.check("#auth-by-phone")
    assert page.is_hidden("#auth-email")
    page.fill("#auth-phone", f"010-{digits[:4]}-{digits[4:]}")
    page.fill("#auth-password", "a long enough password")
    page.click("#auth-submit")
    page.wait_for_selector("#logout")
    page.click("#tab-account")
    page.wait_for_selector(f"#account-email:has-text('+8210{digits}')")
    page.click("#logout")
    # Signed out, the form remembers the member signs in by phone.
    page.wait_for_selector("#auth-phone")
    assert page.is_checked("#auth-by-phone")
    # The same number, written the international way, is the same account: signing up
    # again is refused with the reason, signing in works.
    page.click("#auth-toggle")
    page.fill("#auth-phone", f"+82 10 {digits[:4]} {digits[4:]}")
    page.fill("#auth-password", "a long enough password")
    page.click("#auth-submit")
    page.wait_for_selector("#auth-error:has-text('이 휴대폰 번호로 가입된 계정이 있습니다')")
    page.click("#auth-toggle")
    page.fill("#auth-password", "a long enough password")
    page.click("#auth-submit")
    page.wait_for_selector("#logout")
    me = page.evaluate(
        "fetch('/api/auth/me', {headers: {authorization: 'Bearer ' + localStorage.getItem('smartgym.app')}})"
        ".then((r) => r.json())"
    )
    assert me["phone"] == f"+8210{digits}"
    assert me["email"] is None


def test_a_bad_phone_number_is_explained_on_the_page_and_the_servers_reason_after(stack, open_page):
    page = open_page(viewport=PHONE)
    page.goto(f"{stack.gateway}/app")
    page.wait_for_selector("#auth-form")
    calls = auth_calls(page)
    page.click("#auth-toggle")
    page.check("#auth-by-phone")
    page.fill("#auth-password", "a long enough password")
    page.click("#auth-submit")
    page.wait_for_selector("#auth-error:has-text('Enter your mobile phone number')")
    for bad in ("010-12", "12345678", "010-1234-567a"):
        page.fill("#auth-phone", bad)
        page.click("#auth-submit")
        page.wait_for_selector("#auth-error:has-text('This is not a phone number')")
        assert page.get_attribute("#auth-phone", "aria-invalid") == "true"
        assert page.evaluate("document.activeElement.id") == "auth-phone"
    page.fill("#auth-phone", "010-1234-5678")
    page.fill("#auth-password", "short")
    page.click("#auth-submit")
    page.wait_for_selector("#auth-error:has-text('at least 10 characters')")
    page.check("#auth-by-email")
    page.fill("#auth-email", "not an address")
    page.fill("#auth-password", "a long enough password")
    page.click("#auth-submit")
    page.wait_for_selector("#auth-error:has-text('This is not an email address')")
    assert calls == [], calls
    assert_accessible(page)
    # What only the server knows is shown with its reason.
    page.check("#auth-by-phone")
    page.fill("#auth-phone", f"010-9{random.randrange(10**7):07d}")
    page.fill("#auth-password", "aaaaaaaaaa")
    page.click("#auth-submit")
    page.wait_for_selector("#auth-error:has-text('Not accepted: password needs at least 5 different characters')")
    assert len(calls) == 1, calls
    page.click("#auth-toggle")
    page.fill("#auth-password", "a long enough password")
    page.click("#auth-submit")
    page.wait_for_selector("#auth-error:has-text('Phone number or password is wrong')")


# What the native wrapper puts on the page: its card reader answers when the test says
# which card was read (window.readCard), so the pending state can be seen.
CARD_READER = """
window.SmartGymWrapper = {
  platform: 'android',
  cardToken: () => new Promise((resolve) => {
    window.readCard = (token) => { window.readCard = null; resolve(token); };
  }),
};
"""


def read_card(page, token: str | None) -> None:
    page.wait_for_function("typeof window.readCard === 'function'")
    page.evaluate("(token) => window.readCard(token)", token)


def test_a_member_checks_their_identity_with_a_card_from_the_account_screen(stack, open_page):
    email = f"member-{uuid.uuid4().hex[:8]}@example.com"
    with httpx.Client(base_url=stack.gateway, timeout=15) as client:
        created = client.post("/api/auth/signup", json={"email": email, "password": PASSWORD})
        assert created.status_code == 201, created.text
        now = datetime.now(UTC)
        membership = {
            "branch_id": BRANCH,
            "status": "active",
            "valid_from": now.isoformat(),
            "valid_until": (now + timedelta(days=30)).isoformat(),
            "requires_identity": True,
        }
        saved = client.put(
            f"/api/auth/members/{created.json()['id']}/memberships", json=membership, headers=stack.login(OWNER)
        )
        assert saved.status_code == 200, saved.text
    # A plain browser has no card reader: the status, and where the check is done.
    plain = open_page(viewport=PHONE)
    plain.goto(f"{stack.gateway}/app")
    plain.fill("#auth-email", email)
    plain.fill("#auth-password", PASSWORD)
    plain.click("#auth-submit")
    plain.click("#tab-account")
    plain.wait_for_selector("#identity-app-only")
    assert plain.get_attribute("#identity", "data-state") == "none"
    assert not plain.locator("#identity-start").count()

    page = open_page(viewport=PHONE)
    page.add_init_script(CARD_READER)
    page.goto(f"{stack.gateway}/app")
    page.fill("#auth-email", email)
    page.fill("#auth-password", PASSWORD)
    page.click("#auth-submit")
    page.click("#tab-account")
    page.wait_for_selector("#account-memberships .needs-identity")
    calls = auth_calls(page)
    page.click("#identity-start")
    page.wait_for_selector("#identity-error:has-text('Enter your name as it is on the card')")
    page.fill("#identity-name", "Kim Minji")
    page.click("#identity-start")
    page.wait_for_selector("#identity-error:has-text('Enter your date of birth')")
    assert calls == [], calls
    page.fill("#identity-birth", "1990-05-01")
    # Closing the card reader sends nothing.
    page.click("#identity-start")
    page.wait_for_selector("#identity[data-state='pending']")
    read_card(page, None)
    page.wait_for_selector("#account-identity:has-text('cancelled')")
    assert page.get_attribute("#identity", "data-state") == "none"
    assert calls == [], calls
    # A card in another name: refused, in plain words.
    page.click("#identity-start")
    read_card(page, "tok_mismatch_1")
    page.wait_for_selector("#identity[data-state='failed']")
    assert "does not match the card holder" in page.inner_text("#identity-error")
    # The card company down: nothing changed, try again.
    page.click("#identity-start")
    read_card(page, "tok_fail_1")
    page.wait_for_selector("#identity-error:has-text('not answering')")
    assert page.get_attribute("#identity", "data-state") == "failed"
    # The right card: pending while the card company is asked, then verified, and the
    # membership needs nothing more.
    page.click("#identity-start")
    page.wait_for_selector("#identity[data-state='pending']")
    assert page.is_disabled("#identity-start")
    read_card(page, "tok_ok_1")
    page.wait_for_selector("#identity[data-state='verified']")
    assert "Identity checked on" in page.inner_text("#account-identity")
    page.wait_for_selector("#account-memberships .needs-identity", state="detached")
    assert not page.locator("#identity-start").count()
    assert_accessible(page)
    page.reload()
    page.wait_for_selector("#account-identity[data-verified='true']")
