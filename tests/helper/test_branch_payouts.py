"""Payouts as a branch sees them: its owner lists the payouts of the helpers bound to it
and signs off on requests; head office pays. Every move is published from the outbox."""

from __future__ import annotations

import uuid

from common.security import Role
from contracts import PayoutStatusChanged
from helper.ledger import _append
from helper.models import Task
from tests.helper.conftest import BRANCH, HelperApp
from tests.support import tokens
from tests.support.waiting import eventually


async def _earned(opened: HelperApp, helper_id: uuid.UUID, amount: int, branch_id: str = BRANCH) -> None:
    """A confirmed task's reward, as the reward ledger books it."""
    assert opened.app is not None
    kernel = opened.app.state.kernel
    task_id = uuid.uuid4()
    async with kernel.db.transaction() as session:
        from common.events.envelope import utc_now

        session.add(
            Task(
                id=task_id,
                helper_id=helper_id,
                branch_id=branch_id,
                task_type="wash",
                category="laundry",
                title="Wash",
                reward_krw=amount,
                client_key=uuid.uuid4().hex,
                status="approved",
                expected_photos=1,
                photo_count=1,
                submitted_at=utc_now(),
            )
        )
        await _append(
            session,
            kernel.db.is_sqlite,
            helper_id=helper_id,
            kind="task_reward",
            amount_krw=amount,
            source=f"task:{task_id}",
            task_id=task_id,
        )


async def _request(opened: HelperApp, amount: int, helper: dict[str, str] | None = None) -> str:
    answer = await opened.client.post(
        "/v1/me/payouts", json={"amount_krw": amount, "client_key": uuid.uuid4().hex}, headers=helper or opened.helper
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


async def test_an_owner_signs_off_on_payouts_of_their_branchs_helpers(helper_app: HelperApp) -> None:
    opened = helper_app
    await _earned(opened, opened.helper_id, 5000)
    await _earned(opened, opened.helper_id, 2000, branch_id="hongdae")
    first, second = await _request(opened, 3000), await _request(opened, 2000)
    # A helper of another branch only: not this owner's to see or move.
    stranger = uuid.uuid4()
    await _earned(opened, stranger, 4000, branch_id="hongdae")
    foreign = await _request(opened, 4000, helper=tokens.bearer(stranger, [Role.HELPER]))

    url = f"/v1/branches/{BRANCH}/payouts"
    listed = (await opened.client.get(url, params={"status": "requested"}, headers=opened.owner)).json()
    assert sorted(item["id"] for item in listed) == sorted([first, second])
    assert {item["earned_here_krw"] for item in listed} == {5000}  # hongdae's 2000 is not this branch's
    assert {item["helper_id"] for item in listed} == {str(opened.helper_id)}
    other_owner = tokens.bearer(uuid.uuid4(), [Role.BRANCH_OWNER], ("hongdae",))
    assert (await opened.client.get(url, headers=other_owner)).status_code == 403
    assert (await opened.client.get(url, params={"status": "lost"}, headers=opened.owner)).status_code == 422

    approve = {"status": "approved", "note": "checked the laundry log"}
    approved = await opened.client.post(f"{url}/{first}/status", json=approve, headers=opened.owner)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    again = await opened.client.post(f"{url}/{first}/status", json=approve, headers=opened.owner)
    assert again.status_code == 403  # settling an approved payout is head office's
    paid = await opened.client.post(f"{url}/{second}/status", json={"status": "paid"}, headers=opened.owner)
    assert paid.status_code == 403
    assert "head office" in paid.json()["detail"]
    rejected = await opened.client.post(f"{url}/{second}/status", json={"status": "rejected"}, headers=opened.owner)
    assert rejected.status_code == 200
    balance = (await opened.client.get("/v1/me/balance", headers=opened.helper)).json()["balance_krw"]
    assert balance == 7000 - 3000  # the rejected 2000 is back
    assert (await opened.client.post(f"{url}/{foreign}/status", json=approve, headers=opened.owner)).status_code == 404
    not_mine = await opened.client.post(
        f"/v1/branches/hongdae/payouts/{foreign}/status", json=approve, headers=opened.owner
    )
    assert not_mine.status_code == 403
    assert not_mine.json()["detail"] == "not permitted for this branch"

    operator = tokens.bearer(uuid.uuid4(), [Role.OPERATOR])
    settled = await opened.client.post(f"/v1/payouts/{first}/status", json={"status": "paid"}, headers=operator)
    assert settled.status_code == 200

    await eventually(lambda: len(opened.of(PayoutStatusChanged)) == 3, timeout=10)
    moves = [(str(e.payout_id), e.previous_status, e.status, e.branch_id) for e in opened.of(PayoutStatusChanged)]
    assert moves == [
        (first, "requested", "approved", BRANCH),
        (second, "requested", "rejected", BRANCH),
        (first, "approved", "paid", None),
    ]
