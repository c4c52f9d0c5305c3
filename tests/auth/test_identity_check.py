"""Identity check by card against the partner simulator on a real loopback socket."""

from __future__ import annotations

import pytest

from auth import cardcheck_sim
from auth.app import create_app
from auth.settings import AuthSettings
from contracts import MembershipChanged
from tests.auth.helpers import bearer, grant_membership, operator_tokens, outbox_events, signup_and_login
from tests.support.apps import FAST_HASHER, asgi_client, free_port, serving

API_KEY = "partner-key-for-tests"


@pytest.fixture
async def partner():
    simulator = cardcheck_sim.create_app(API_KEY)
    async with serving(simulator) as url:
        yield simulator, url


def auth_settings(settings, partner_url: str, api_key: str = API_KEY) -> AuthSettings:
    return AuthSettings(
        **{**settings.model_dump(), "cardcheck_url": partner_url, "cardcheck_api_key": api_key, "breaker_fail_max": 2}
    )


@pytest.fixture
async def app_and_client(settings, partner):
    _simulator, url = partner
    app = create_app(auth_settings(settings, url), hasher=FAST_HASHER)
    async with asgi_client(app) as client:
        yield app, client


async def test_verified_identity_republishes_memberships(app_and_client, settings, partner):
    app, client = app_and_client
    simulator, _ = partner
    operator = await operator_tokens(app, client)
    member_id, member = await signup_and_login(client)
    await grant_membership(client, operator, member_id, requires_identity=True)
    checked = await client.post(
        "/me/identity-check",
        headers=bearer(member),
        json={
            "card_token": "tok_ok_1234",
            "holder_name": "Kim Min-ji",
            "birth_date": "1994-03-02",
        },
    )
    assert checked.json() == {"verified": True, "reason": None}
    assert (await client.get("/me", headers=bearer(member))).json()["identity_verified_at"]  # the app shows it
    events = [event["data"] for event in outbox_events(settings, MembershipChanged.routing_key())]
    assert [(event["version"], event["identity_required"], event["identity_verified"]) for event in events] == [
        (1, True, False),
        (2, True, True),
    ]
    [request] = simulator.state.requests
    assert request.card_token == "tok_ok_1234"  # only the partner's token crossed, never a card number
    trail = await app.state.accounts.audit_trail(subject=member_id, action="identity_checked", limit=5)
    assert trail[0].details["verified"] is True


@pytest.mark.parametrize(
    ("card_token", "status", "body"),
    [
        ("tok_mismatch_1", 200, {"verified": False, "reason": "name_mismatch"}),
        ("tok_stolen_1", 200, {"verified": False, "reason": "card_reported_stolen"}),
        ("tok_unknown", 422, {"detail": "card check refused: unknown_card_token"}),
    ],
)
async def test_partner_verdicts_reach_the_member(client, card_token, status, body):
    _, member = await signup_and_login(client)
    answer = await client.post(
        "/me/identity-check",
        headers=bearer(member),
        json={
            "card_token": card_token,
            "holder_name": "Kim Min-ji",
            "birth_date": "1994-03-02",
        },
    )
    assert answer.status_code == status
    assert answer.json() == body


async def test_bad_input_never_reaches_the_partner(client, partner):
    simulator, _ = partner
    _, member = await signup_and_login(client)
    for bad in (
        {"card_token": "4111 1111 1111 1111", "holder_name": "K", "birth_date": "1994-03-02"},
        {"card_token": "tok_ok", "holder_name": "K", "birth_date": "1994-13-45"},
        {"card_token": "tok_ok", "holder_name": "K", "birth_date": "1994-03-02", "cvv": "123"},
    ):
        assert (await client.post("/me/identity-check", headers=bearer(member), json=bad)).status_code == 422
    assert simulator.state.requests == []


async def test_failing_partner_gives_503_and_trips_the_breaker(client, partner):
    simulator, _ = partner
    _, member = await signup_and_login(client)
    body = {"card_token": "tok_fail_1", "holder_name": "Kim", "birth_date": "1994-03-02"}
    for _ in range(2):
        answer = await client.post("/me/identity-check", headers=bearer(member), json=body)
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "30"
    asked = len(simulator.state.requests)
    assert (await client.post("/me/identity-check", headers=bearer(member), json=body)).status_code == 503
    assert len(simulator.state.requests) == asked  # the open breaker did not call the partner


async def test_unreachable_partner_or_wrong_key_is_unavailable_not_the_members_fault(settings, partner):
    _, url = partner
    for partner_url, key in ((f"http://127.0.0.1:{free_port()}", API_KEY), (url, "wrong-key")):
        app = create_app(auth_settings(settings, partner_url, key), hasher=FAST_HASHER)
        async with asgi_client(app) as client:
            _, member = await signup_and_login(client)
            answer = await client.post(
                "/me/identity-check",
                headers=bearer(member),
                json={
                    "card_token": "tok_ok_1",
                    "holder_name": "Kim",
                    "birth_date": "1994-03-02",
                },
            )
            assert answer.status_code == 503
