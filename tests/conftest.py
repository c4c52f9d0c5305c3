from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.infra import PostgresDatabases, require_postgres, require_rabbitmq


@pytest.fixture
def rabbitmq_url() -> str:
    return require_rabbitmq()


@pytest.fixture
def postgres() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases(require_postgres())
    yield databases
    databases.drop_all()


@pytest.fixture
def namespace() -> str:
    """A bus namespace of this test's own: exchanges and queues never collide."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def broker_cleanup(rabbitmq_url: str, namespace: str) -> AsyncIterator[None]:
    yield
    from tests.support.amqp import delete_namespace

    await delete_namespace(rabbitmq_url, namespace)
