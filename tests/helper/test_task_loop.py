"""The whole task loop through the gateway on real RabbitMQ and PostgreSQL: submit →
judged → in the owner's queue → confirmed → credited exactly once, whatever the broker
delivers twice."""

from __future__ import annotations

import uuid

import httpx

from common.security import Role
from contracts import CATALOG, TaskConfirmed
from tests.helper.conftest import BRANCH
from tests.helper.images import jpeg, scene
from tests.helper.loop import Loop, task_loop
from tests.support import tokens
from tests.support.waiting import eventually

H = "/api/helper/v1"
B = "/api/branch-owner/v1"
REWARD = 3000


async def prepare(loop: Loop) -> None:
    profile = {
        "name": "SmartGym Gangnam",
        "address": "Seoul, Gangnam-gu, Teheran-ro 1",
        "lat": 37.498,
        "lon": 127.028,
        "facilities": ["shower", "parking"],
        "equipment": {"treadmill": 8, "rack": 2},
        "prices": [{"name": "1 month", "amount_krw": 59000}],
    }
    response = await loop.gateway.put(f"{B}/branches/{BRANCH}", json=profile, headers=loop.owner)
    assert response.status_code == 201, response.text
    task_type = {"category": "laundry", "title": "Wash towels", "reward_krw": REWARD, "daily_limit": 20}
    response = await loop.gateway.put(f"{H}/branches/{BRANCH}/task-types/wash", json=task_type, headers=loop.owner)
    assert response.status_code == 200, response.text
    response = await loop.gateway.put(f"{H}/branches/{BRANCH}/helpers/{loop.helper_id}", headers=loop.owner)
    assert response.status_code == 204, response.text


async def submit(loop: Loop, seed: int) -> str:
    form = {"branch_id": BRANCH, "task_type": "wash", "client_key": uuid.uuid4().hex}
    files = [("photos", ("towels.jpg", jpeg(scene(seed)), "image/jpeg"))]
    response = await loop.gateway.post(f"{H}/tasks", data=form, files=files, headers=loop.helper)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def queued(loop: Loop, task_id: str) -> dict:
    found: dict = {}

    async def in_queue() -> bool:
        page = (await loop.gateway.get(f"{B}/branches/{BRANCH}/queue", headers=loop.owner)).json()
        found.update(next((item for item in page["items"] if item["task_id"] == task_id), {}))
        return bool(found)

    await eventually(in_queue, timeout=20)
    return found


async def balance(loop: Loop) -> int:
    response = await loop.gateway.get(f"{H}/me/balance", headers=loop.helper)
    assert response.status_code == 200, response.text
    return int(response.json()["balance_krw"])


async def has_balance(loop: Loop, amount: int) -> bool:
    return await balance(loop) == amount


async def test_submit_judge_confirm_credit_once_through_the_gateway(
    tmp_path, postgres, rabbitmq_url, namespace, broker_cleanup
):
    async with task_loop(tmp_path, postgres=postgres, broker_url=rabbitmq_url, namespace=namespace) as (loop, helper):
        await prepare(loop)
        task_id = await submit(loop, seed=101)
        item = await queued(loop, task_id)
        assert item["verdict"] == "needs_review"
        assert item["reasons"][0]["code"] == "no_model"
        assert item["photo_urls"] == [f"/api/helper/v1/tasks/{task_id}/photos/0"]
        photo = await loop.gateway.get(item["photo_urls"][0], headers=loop.owner)
        assert photo.status_code == 200
        assert photo.headers["content-type"] == "image/jpeg"

        # Another branch's owner sees nothing of it and cannot decide it.
        stranger = tokens.bearer(uuid.uuid4(), [Role.BRANCH_OWNER], ("hongdae",))
        assert (await loop.gateway.get(f"{B}/branches/{BRANCH}/queue", headers=stranger)).status_code == 403
        denied = await loop.gateway.post(
            f"{B}/branches/{BRANCH}/queue/{task_id}/decision", json={"decision": "approve"}, headers=stranger
        )
        assert denied.status_code == 403
        assert (await loop.gateway.get(item["photo_urls"][0], headers=stranger)).status_code == 403
        # Helpers cannot act as owners; members cannot reach helper's API at all.
        assert (await loop.gateway.get(f"{B}/branches/{BRANCH}/queue", headers=loop.helper)).status_code == 403
        member = tokens.bearer(uuid.uuid4(), [Role.CUSTOMER])
        assert (await loop.gateway.get(f"{H}/me/balance", headers=member)).status_code == 403

        decided = await loop.gateway.post(
            f"{B}/branches/{BRANCH}/queue/{task_id}/decision", json={"decision": "approve"}, headers=loop.owner
        )
        assert decided.status_code == 200, decided.text
        await eventually(lambda: has_balance(loop, REWARD), timeout=20)
        again = await loop.gateway.post(
            f"{B}/branches/{BRANCH}/queue/{task_id}/decision", json={"decision": "approve"}, headers=loop.owner
        )
        assert again.status_code == 409

        # The broker delivers the decision again (a relay that died before marking it), and
        # a second decision event about the same task arrives: neither pays.
        assert await loop.republish("TaskConfirmed") == 1
        [original] = loop.query(loop.branch_owner_db, "SELECT body FROM outbox WHERE routing_key LIKE 'TaskConfirmed%'")
        copy = CATALOG.decode(original.body.encode())
        assert isinstance(copy, TaskConfirmed)
        await loop.publish(copy.model_copy(update={"event_id": uuid.uuid4()}))

        async def both_seen() -> bool:
            async with httpx.AsyncClient() as direct:
                metrics = (await direct.get(f"{helper['url']}/metrics")).text
            skipped = 'smartgym_events_duplicate_total{consumer="helper.reward_ledger"} 1.0' in metrics
            inbox = loop.query(
                loop.helper_db, "SELECT count(*) AS n FROM processed_events WHERE consumer = 'helper.reward_ledger'"
            )[0].n
            return skipped and inbox == 2  # the decision and the second decision event, once each

        await eventually(both_seen, timeout=20)
        assert await balance(loop) == REWARD
        entries = loop.query(loop.helper_db, "SELECT kind, amount_krw FROM ledger_entries")
        assert [(row.kind, row.amount_krw) for row in entries] == [("task_reward", REWARD)]

        mine = (await loop.gateway.get(f"{H}/me/tasks/{task_id}", headers=loop.helper)).json()
        assert mine["status"] == "approved"
        history = (await loop.gateway.get(f"{H}/me/ledger", headers=loop.helper)).json()
        assert [entry["task_id"] for entry in history["entries"]] == [task_id]

        # Paid out: the balance is held at once, and given back if the payout is refused.
        payout = await loop.gateway.post(
            f"{H}/me/payouts", json={"amount_krw": 2000, "client_key": "payout-000001"}, headers=loop.helper
        )
        assert payout.status_code == 201, payout.text
        assert await balance(loop) == REWARD - 2000
        too_much = await loop.gateway.post(
            f"{H}/me/payouts", json={"amount_krw": 2000, "client_key": "payout-000002"}, headers=loop.helper
        )
        assert too_much.status_code == 409
        operator = tokens.bearer(uuid.uuid4(), [Role.OPERATOR])
        refused = await loop.gateway.post(
            f"{H}/payouts/{payout.json()['id']}/status",
            json={"status": "rejected", "note": "bank details"},
            headers=operator,
        )
        assert refused.status_code == 200, refused.text
        assert await balance(loop) == REWARD
