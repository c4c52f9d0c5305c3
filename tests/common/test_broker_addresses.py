"""Broker addresses in the settings, and a connection that moves to the next node."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from common.events.cluster import ClusterConnection, connect_cluster
from common.settings import PlatformSettings
from tests.support.apps import free_port


def test_addresses_replace_the_urls_node_and_keep_its_credentials_vhost_and_options():
    settings = PlatformSettings(
        broker_url="amqps://svc:p%40ss@ignored:5671/prod?heartbeat=30",
        broker_addresses="rabbit-0.rabbit:5671, rabbit-1.rabbit:5671,[fd00::2]:5671",
    )
    assert settings.broker_urls() == [
        "amqps://svc:p%40ss@rabbit-0.rabbit:5671/prod?heartbeat=30&reconnect_interval=1",
        "amqps://svc:p%40ss@rabbit-1.rabbit:5671/prod?heartbeat=30&reconnect_interval=1",
        "amqps://svc:p%40ss@[fd00::2]:5671/prod?heartbeat=30&reconnect_interval=1",
    ]


def test_without_addresses_the_url_is_the_one_node_and_its_own_interval_wins():
    settings = PlatformSettings(broker_url="amqp://u:p@rabbit:5672/?reconnect_interval=3")
    assert settings.broker_urls() == ["amqp://u:p@rabbit:5672/?reconnect_interval=3"]
    assert PlatformSettings().broker_urls() == []


@pytest.mark.parametrize("addresses", ["rabbit", "rabbit:0", "rabbit:70000", "a:1,a:1", "http://rabbit:5672"])
def test_malformed_addresses_are_refused(addresses):
    with pytest.raises(ValidationError):
        PlatformSettings(broker_url="amqp://u:p@rabbit/", broker_addresses=addresses)


async def test_a_dead_first_node_is_skipped_at_start_and_the_next_taken(rabbitmq_url):
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/?reconnect_interval=0.2"
    connection = await connect_cluster([dead, rabbitmq_url])
    try:
        assert isinstance(connection, ClusterConnection)
        assert connection.node == "127.0.0.1:5672"
        channel = await connection.channel()
        await channel.close()
    finally:
        await connection.close()
