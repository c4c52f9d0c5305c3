"""A process's own broadcast queue survives a lost connection: the robust connection
declares it again, events published afterwards arrive, and ``on_connected`` runs again so
the process can re-read what it missed while cut off."""

from __future__ import annotations

import pytest

from common.events.envelope import OutgoingMessage
from common.events.rabbitmq import RabbitMQBus
from common.observability import Metrics
from tests.support.faultproxy import FaultProxy
from tests.support.ledger import CATALOG, EntryRecorded
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("broker_cleanup")


async def test_broadcast_comes_back_after_a_cut_connection(rabbitmq_url, namespace):
    proxy, through_proxy = await FaultProxy.in_front_of(rabbitmq_url)
    follower = RabbitMQBus(
        f"{through_proxy}?reconnect_interval=0.2", catalog=CATALOG, metrics=Metrics(), namespace=namespace
    )
    publisher = RabbitMQBus(rabbitmq_url, catalog=CATALOG, metrics=Metrics(), namespace=namespace)
    seen: list[int] = []
    connected = 0

    async def remember(event):
        seen.append(event.seq)

    async def on_connected() -> None:
        nonlocal connected
        connected += 1

    await publisher.start()
    await follower.start()
    try:
        await follower.broadcast([EntryRecorded], remember, on_connected=on_connected)
        assert connected == 1
        await publisher.publish_many([OutgoingMessage.of(EntryRecorded(seq=1))])
        await eventually(lambda: seen == [1])

        proxy.cut()
        await eventually(lambda: connected == 2, timeout=30)
        await publisher.publish_many([OutgoingMessage.of(EntryRecorded(seq=2))])
        await eventually(lambda: seen == [1, 2])
    finally:
        await follower.close()
        await publisher.close()
        await proxy.stop()
