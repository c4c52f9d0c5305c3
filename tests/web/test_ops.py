"""The operations dashboard in chromium: branches on a map (no tiles) and in a list with
live equipment health, fault acknowledgement, the fault timeline, live access events and
charts, a gateway breaker seen opening when an upstream stops, a parked event inspected
and replayed on a real broker, and a model rolled back."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
from fastapi import FastAPI

from common.db import Database
from common.events.bus import Subscriptions
from common.events.envelope import OutgoingMessage, utc_now
from common.events.rabbitmq import RabbitMQBus
from common.migrations import upgrade
from common.observability import Metrics
from gateway.app import create_app
from gateway.settings import GatewaySettings
from mlops import registry, taskpack
from mlops.packs import pack_store, upload_pack
from mlops.settings import MlopsSettings
from monitoring.app import create_app as create_monitoring
from monitoring.settings import MonitoringSettings
from smartgym.demo import BRANCH, ENTRY_GATE, OPERATOR, OWNER
from smartgym.embedded import plan_overrides
from tests.mlops.synthetic import photo
from tests.support.amqp import delete_namespace
from tests.support.browser import assert_accessible, screenshot, sign_in
from tests.support.ledger import CATALOG as LEDGER_CATALOG
from tests.support.ledger import EntryRecorded
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
            page.close()  # its open connections would hold the gateway's shutdown for 20 s


class LedgerConsumer:
    """A service of the test's own on the real broker: its handler fails while ``failing``
    is set, so the event it was sent ends in its parking lot."""

    def __init__(self, url: str, namespace: str) -> None:
        self.url = url
        self.namespace = namespace
        self.failing = True
        self.taken: Counter[int] = Counter()
        self.event_id = ""
        self.app = FastAPI(lifespan=self._lifespan)

    async def _handle(self, event: EntryRecorded) -> None:
        if self.failing:
            raise RuntimeError(f"ledger closed for entry {event.seq}")
        self.taken[event.seq] += 1

    @asynccontextmanager
    async def _lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        bus = RabbitMQBus(self.url, catalog=LEDGER_CATALOG, metrics=Metrics(), namespace=self.namespace, max_attempts=1)
        await bus.start()
        subscriptions = Subscriptions("ledger")
        subscriptions.add_bus_handler(EntryRecorded, self._handle, name="record")
        await bus.subscribe(subscriptions)
        # Older than the inbox remembers: the console asks before it replays it.
        event = EntryRecorded(seq=7, occurred_at=utc_now() - timedelta(days=40))
        self.event_id = str(event.event_id)
        await bus.publish_many([OutgoingMessage.of(event)])
        try:
            yield
        finally:
            await bus.close()
            await delete_namespace(self.url, self.namespace)


def test_an_operator_inspects_and_replays_a_parked_event(stack, open_page, rabbitmq_url, tmp_path):
    """On a real broker: monitoring and a gateway of the test's own beside the stack (its
    auth signs the operator in), a consumer that parks what it is sent."""
    wiring = plan_overrides("127.0.0.1", stack.port_offset)
    namespace = f"t{uuid.uuid4().hex[:10]}"
    ledger = LedgerConsumer(rabbitmq_url, namespace)
    fields = {key: value for key, value in wiring.items() if key in MonitoringSettings.model_fields}
    settings = MonitoringSettings(
        **{
            **fields,
            "environment": "test",
            "data_dir": tmp_path,
            "broker_url": rabbitmq_url,
            "bus_namespace": namespace,
            "monitoring_bus_services": ("ledger",),
            "monitoring_heartbeat_host": "127.0.0.1",
            "monitoring_heartbeat_port": 0,
        }
    )
    upgrade("monitoring", settings.database_url("monitoring"))
    gateway_fields = {key: value for key, value in wiring.items() if key in GatewaySettings.model_fields}
    with ThreadServer(ledger.app), ThreadServer(create_monitoring(settings)) as monitoring:
        routes = GatewaySettings(**{**gateway_fields, "monitoring_url": monitoring.url})
        with ThreadServer(create_app(routes)) as gateway:
            page = open_page()
            sign_in(page, gateway.url, "ops", OPERATOR)
            page.goto(f"{gateway.url}/ops#bus")
            row = page.locator(f"#parked-rows tr[data-parked-id='{ledger.event_id}']")
            row.wait_for(timeout=10_000)
            assert "ledger closed for entry 7" in row.inner_text()
            page.wait_for_selector("#backlog-ledger[data-parked='1']")
            row.locator("button[data-inspect]").click()
            drawer = page.locator("#parked-drawer[open]")
            drawer.wait_for()
            assert drawer.locator("[data-fact='reason']").inner_text() == "RuntimeError: ledger closed for entry 7"
            assert ledger.event_id in drawer.locator("#drawer-payload").inner_text()
            assert drawer.locator("[data-fact='occurred_at']").inner_text() != "—"
            assert_accessible(page)
            screenshot(page, "ops-bus-parked-drawer")
            ledger.failing = False
            asked: list[str] = []

            def answer(dialog) -> None:
                asked.append(dialog.message)
                dialog.accept()

            page.on("dialog", answer)
            drawer.locator("#drawer-replay").click()
            row.wait_for(state="detached", timeout=10_000)
            page.wait_for_selector("#backlog-ledger[data-parked='0']", timeout=10_000)
            page.wait_for_selector("#parked-empty:not([hidden])")
            assert "handed back to ledger" in page.locator("#status").inner_text()
            [question] = asked
            assert "before ledger can be sure to still remember consuming it" in question
            assert "Replay it anyway?" in question
            deadline = time.monotonic() + 10
            while ledger.taken[7] < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)  # a second copy would have arrived by now
            assert ledger.taken == Counter({7: 1})
            assert_accessible(page)
            screenshot(page, "ops-bus-replayed")
            # The browser's open connections would hold each server's shutdown for 20 s.
            page.close()


def _task_pack(version: str) -> list[tuple[str, bytes]]:
    """A task-judge pack trained here on synthetic photos (well under a second)."""
    rng = random.Random(5)
    labels = [index % 2 == 0 for index in range(60)]
    batch = np.stack([taskpack.photo_tensor(photo(done, rng)) for done in labels])
    model = taskpack.train_logistic(taskpack.features(batch), np.array(labels, dtype=float))
    return list(taskpack.pack_files(taskpack.export_onnx(model), version=version))


def _register_verified(data_dir: Path, family: str, versions: list[str]) -> None:
    """Put packs in the stack's registry as verified versions. The verification gate needs
    an evaluation set the demo has not got; tests/mlops run it, here it is stood in for."""

    async def register() -> None:
        settings = MlopsSettings(data_dir=data_dir)
        database = Database(settings.database_url("mlops"))
        store = pack_store(settings)
        try:
            for version in versions:
                files = await upload_pack(store, family=family, version=version, files=_task_pack(version))
                async with database.transaction() as session:
                    await registry.register(session, family=family, version=version, files=files, code_version="test")
                    report = {"passed": True, "reasons": ["stood in for by the browser test"], "metrics": {}}
                    await registry.record_verification(
                        session, family=family, version=version, passed=True, report=report
                    )
        finally:
            await store.close()
            await database.dispose()

    # Playwright's sync API holds this thread's event loop: the registry's run in another.
    worker = threading.Thread(target=asyncio.run, args=(register(),))
    worker.start()
    worker.join(timeout=60)


def test_an_operator_rolls_back_a_model(stack, open_page):
    family, first, second = "task_judge", "1.90.0", "1.91.0"
    _register_verified(stack.data_dir, family, [first, second])
    operator = stack.login(OPERATOR)
    for version in (first, second):
        deployed = httpx.post(
            f"{stack.gateway}/api/mlops/v1/models/{family}/deployments",
            json={"version": version, "canary_share": 1},
            headers=operator,
            timeout=10,
        )
        assert deployed.status_code == 201, deployed.text
    page = open_page()
    sign_in(page, stack.gateway, "ops", OPERATOR)
    page.goto(f"{stack.gateway}/ops#platform")
    page.wait_for_selector(f"#model-versions tr[data-version='{second}'][data-status='deployed']")
    assert page.locator(f"#model-versions tr[data-version='{first}']").get_attribute("data-status") == "retired"
    assert_accessible(page)
    page.click(f"#model-rollback-{family}")
    page.wait_for_selector(f"#model-versions tr[data-version='{first}'][data-status='deployed']", timeout=10_000)
    assert page.locator(f"#model-versions tr[data-version='{second}']").get_attribute("data-status") == "retired"
    now = httpx.get(f"{stack.gateway}/api/mlops/v1/models/{family}/deployed", headers=operator, timeout=10)
    assert now.json()["stable"]["version"] == first, now.text
    screenshot(page, "ops-platform-model-rolled-back")
