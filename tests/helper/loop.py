"""The task loop's pieces for end-to-end tests: helper and branch_owner on their own
PostgreSQL databases, RabbitMQ between them, the gateway in front, a JWKS stand-in for auth."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from branch_owner.app import create_app as create_branch_owner
from branch_owner.settings import BranchOwnerSettings
from common.events.envelope import OutgoingMessage
from common.events.rabbitmq import RabbitMQBus
from common.migrations import upgrade
from common.observability import Metrics
from common.security import Role
from contracts import CATALOG
from gateway.app import create_app as create_gateway
from gateway.settings import GatewaySettings
from helper.app import create_app as create_helper
from helper.settings import HelperSettings
from tests.helper.conftest import BRANCH
from tests.support import tokens
from tests.support.apps import asgi_client, serving

FAST = {"outbox_poll_interval_s": 0.1, "bus_retry_delays_ms": (100, 200, 400)}


@dataclass
class Loop:
    gateway: httpx.AsyncClient
    helper_db: str
    branch_owner_db: str
    broker_url: str
    namespace: str
    owner_id: uuid.UUID
    helper_id: uuid.UUID

    @property
    def owner(self) -> dict[str, str]:
        return tokens.bearer(self.owner_id, [Role.BRANCH_OWNER], (BRANCH,))

    @property
    def helper(self) -> dict[str, str]:
        return tokens.bearer(self.helper_id, [Role.HELPER])

    def query(self, database: str, sql: str, **params: Any) -> list[Any]:
        engine = create_engine(database)
        try:
            with engine.connect() as connection:
                return list(connection.execute(text(sql), params))
        finally:
            engine.dispose()

    async def republish(self, routing_key_prefix: str) -> int:
        """Send every TaskConfirmed branch_owner ever published to the broker once more,
        byte for byte: what a relay that died between confirm and mark would do."""
        rows = self.query(
            self.branch_owner_db,
            "SELECT event_id, routing_key, body, correlation_id FROM outbox WHERE routing_key LIKE :prefix",
            prefix=f"{routing_key_prefix}%",
        )
        bus = RabbitMQBus(self.broker_url, catalog=CATALOG, metrics=Metrics(), namespace=self.namespace)
        await bus.start()
        try:
            await bus.publish_many(
                [OutgoingMessage(row.event_id, row.routing_key, row.body.encode(), row.correlation_id) for row in rows]
            )
        finally:
            await bus.close()
        return len(rows)

    async def publish(self, event: Any) -> None:
        bus = RabbitMQBus(self.broker_url, catalog=CATALOG, metrics=Metrics(), namespace=self.namespace)
        await bus.start()
        try:
            await bus.publish_many([OutgoingMessage.of(event)])
        finally:
            await bus.close()


def settings_of(
    kind: type[Any], tmp_path: Path, *, database: str, service: str, broker_url: str, namespace: str, auth_url: str
) -> Any:
    return kind(
        environment="test",
        data_dir=tmp_path,
        database_urls={service: database},
        broker_url=broker_url,
        bus_namespace=namespace,
        auth_url=auth_url,
        **FAST,
    )


@asynccontextmanager
async def task_loop(
    tmp_path: Path, *, postgres: Any, broker_url: str, namespace: str, in_process_helper: bool = True
) -> AsyncIterator[tuple[Loop, dict[str, Any]]]:
    """Everything but (optionally) helper; yields the loop and what a helper process needs."""
    helper_db, branch_owner_db = postgres.create("helper"), postgres.create("branch_owner")
    upgrade("helper", helper_db)
    upgrade("branch_owner", branch_owner_db)
    async with AsyncExitStack() as stack:
        auth_url = await stack.enter_async_context(serving(tokens.jwks_app()))
        common = {"broker_url": broker_url, "namespace": namespace, "auth_url": auth_url}
        owner_settings = settings_of(
            BranchOwnerSettings, tmp_path, database=branch_owner_db, service="branch_owner", **common
        )
        owner_url = await stack.enter_async_context(
            serving(create_branch_owner(owner_settings, keys=tokens.key_cache()))
        )
        helper_settings = settings_of(HelperSettings, tmp_path, database=helper_db, service="helper", **common)
        from tests.support.apps import free_port

        helper_port = free_port()
        helper_url = f"http://127.0.0.1:{helper_port}"
        if in_process_helper:
            await stack.enter_async_context(
                serving(create_helper(helper_settings, keys=tokens.key_cache()), helper_port)
            )
        gateway_settings = GatewaySettings(
            environment="test",
            auth_url=auth_url,
            helper_url=helper_url,
            branch_owner_url=owner_url,
            gateway_ip_rate_limit="10000/second",
        )
        gateway = await stack.enter_async_context(asgi_client(create_gateway(gateway_settings)))
        loop = Loop(gateway, helper_db, branch_owner_db, broker_url, namespace, uuid.uuid4(), uuid.uuid4())
        yield loop, {"port": helper_port, "url": helper_url, "settings": helper_settings, "database": helper_db}
