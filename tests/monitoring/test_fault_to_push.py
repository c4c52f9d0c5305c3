"""Fault to push across the real pieces: 1,000 simulated devices on loopback, monitoring
and notification each with its own PostgreSQL database, RabbitMQ between them, and the
local FCM stand-in receiving the push on the branch owner's phone."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from common.migrations import upgrade
from common.security import Role
from monitoring.app import create_app as create_monitoring
from monitoring.settings import MonitoringSettings
from monitoring.simulator import DeviceSimulator
from notification.app import create_app as create_notification
from notification.fcm import ServiceAccount
from notification.fcm_sim import FcmSimState
from notification.fcm_sim import create_app as create_fcm
from notification.settings import NotificationSettings
from tests.monitoring.conftest import BRANCH, FAST, Monitor, staff
from tests.support import tokens
from tests.support.apps import asgi_client, free_port, serving
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow


async def test_killing_one_of_a_thousand_devices_pushes_once_to_its_owner(
    tmp_path, rabbitmq_url, postgres, namespace, broker_cleanup, simulator_port
):
    bus = {"broker_url": rabbitmq_url, "bus_namespace": namespace, "outbox_poll_interval_s": 0.2}
    fcm_port = free_port()
    fcm_url = f"http://127.0.0.1:{fcm_port}"
    account = ServiceAccount.ephemeral("smartgym-e2e", f"{fcm_url}/token")
    fcm = FcmSimState(project_id=account.project_id, public_key_pem=account.public_key_pem())
    notification_settings = NotificationSettings(
        environment="test",
        data_dir=tmp_path,
        database_urls={"notification": postgres.create("notification")},
        fcm_project_id=account.project_id,
        fcm_endpoint=fcm_url,
        fcm_token_uri=account.token_uri,
        fcm_service_account_file=account.to_file(tmp_path / "fcm-account.json"),
        **bus,
    )
    monitoring_settings = MonitoringSettings(
        environment="test",
        data_dir=tmp_path,
        database_urls={"monitoring": postgres.create("monitoring")},
        # A generous echo timeout: on a busy machine a 0.3 s timeout fails healthy devices.
        **{**FAST, "monitoring_ping_interval_s": 5.0, "monitoring_ping_timeout_s": 1.5},
        **bus,
    )
    upgrade("notification", notification_settings.database_url("notification"))
    upgrade("monitoring", monitoring_settings.database_url("monitoring"))
    simulator = DeviceSimulator.numbered(1000, simulator_port)
    await simulator.start()
    owner_id = uuid.uuid4()
    owner = {"authorization": "Bearer " + tokens.issuer().issue(str(owner_id), [Role.BRANCH_OWNER], [BRANCH])}
    other_owner = {
        "authorization": "Bearer " + tokens.issuer().issue(str(uuid.uuid4()), [Role.BRANCH_OWNER], ["hongdae"])
    }
    notification = create_notification(notification_settings, keys=tokens.key_cache())
    # The FCM stand-in signs nothing for us: give notification the ephemeral account's key.
    monitoring = create_monitoring(monitoring_settings, keys=tokens.key_cache())
    try:
        async with (
            serving(create_fcm(fcm), fcm_port),
            asgi_client(notification) as notify_client,
            asgi_client(monitoring) as monitor_client,
        ):
            for headers, phone in ((owner, "owner-phone-token-0001"), (other_owner, "other-owner-phone-0002")):
                response = await notify_client.put(
                    "/me/push-tokens", json={"token": phone, "platform": "ios"}, headers=headers
                )
                assert response.status_code == 204
            monitor = Monitor(monitoring, monitor_client, monitoring_settings)
            await monitor.register(simulator)

            async def all_ok() -> bool:
                # The health gauge (counted by the sweep), not a listing of 1,000 devices 20
                # times a second on the same event loop as the pinger.
                metrics = (await monitor_client.get("/metrics")).text
                seen[:] = [line for line in metrics.splitlines() if line.startswith("monitoring_devices{")]
                return 'monitoring_devices{health="ok"} 1000.0' in seen

            seen: list[str] = []

            try:
                await eventually(all_ok, timeout=90, every=0.5)
            except AssertionError:
                raise AssertionError(f"not every device seen healthy: {seen}") from None

            began = await simulator.set_mode("sim-00421", "dead")
            try:
                await eventually(lambda: len(fcm.received) >= 1, timeout=60)
            except AssertionError:
                faults = (await monitor_client.get("/v1/faults?open=false", headers=staff())).json()
                raise AssertionError(f"no push; faults: {faults[:3]}") from None
            latency = fcm.received[0].at - began
            [pushed] = fcm.received
            assert pushed.token == "owner-phone-token-0001"
            assert pushed.message["data"]["device_id"] == "sim-00421"
            # Ping period (5 s here: 1,000 devices and their simulator share this process's
            # event loop) + confirmation + broker + FCM, with room for a busy machine.
            assert latency < 20.0, latency
            print(f"fault to push: {latency:.2f} s")

            await simulator.set_mode("sim-00421", "ok")
            await eventually(lambda: len(fcm.received) >= 2, timeout=60)  # 3 good pings to recover
            assert fcm.received[1].message["data"]["kind"] == "equipment_recovered"
            await asyncio.sleep(2.0)  # nothing else follows
            assert len(fcm.received) == 2
            faults = (await monitor_client.get("/v1/faults?open=false", headers=staff())).json()
            assert len(faults) == 1
            assert faults[0]["closed_at"] is not None
    finally:
        await simulator.stop()
