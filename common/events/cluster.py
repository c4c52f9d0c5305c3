"""A robust AMQP connection that knows every node of a RabbitMQ cluster.

aio-pika's robust connection reconnects and restores its channels, queues and consumers,
but always to the one URL it was given: when that node is gone for good, the client
waits for it instead of moving to a surviving node. This connection keeps the list and
takes the next node on each new attempt, so losing the node it was on costs one
reconnect interval at most (quorum queues keep the messages on the survivors).

The order is the operator's: the first address is tried first, which lets a pod list the
nearest node first. The initial connection tries every address once before failing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from aio_pika import RobustConnection
from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from yarl import URL

from common.events.transport import CoalescingTransportFactory

log = logging.getLogger(__name__)

# aio-pika makes each (re)connection attempt in this private method of RobustConnection,
# reading ``self.url``; choosing the node there is the only per-attempt hook it offers.
# Checked at import so an aio-pika that renames it fails loudly rather than silently
# pinning every client to one node.
_ATTEMPT = "_RobustConnection__connect_transport"
if not callable(getattr(RobustConnection, _ATTEMPT, None)):  # pragma: no cover - guards an upgrade
    raise ImportError(f"aio_pika.RobustConnection has no {_ATTEMPT}: review common/events/cluster.py")


class ClusterConnection(RobustConnection):
    """A :class:`RobustConnection` whose every new attempt goes to the next node."""

    def __init__(self, url: URL, *, nodes: Sequence[URL], **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        # aio-pika passes only the parameters it knows on to aiormq; this one goes in by
        # hand, for every (re)connection (common/events/transport.py says why).
        self.kwargs["transport_factory"] = CoalescingTransportFactory()
        self._nodes = list(nodes) or [url]
        self._next = 0
        self.attempts = 0

    @property
    def node(self) -> str:
        """host:port of the node this connection uses (or tries) now."""
        return f"{self.url.host}:{self.url.port}"

    async def _RobustConnection__connect_transport(self) -> None:
        self.url = self._nodes[self._next % len(self._nodes)]
        self._next += 1
        self.attempts += 1
        if self.attempts > 1:
            log.warning("connecting to broker node %s (attempt %d)", self.node, self.attempts)
        attempt = getattr(RobustConnection, _ATTEMPT)
        await attempt(self)


async def connect_cluster(urls: str | Sequence[str], **kwargs: Any) -> AbstractRobustConnection:
    """A robust connection over ``urls`` (one per node, same credentials), or one URL."""
    nodes = [URL(urls)] if isinstance(urls, str) else [URL(url) for url in urls]
    if not nodes:
        raise ValueError("no broker URL")
    failure: BaseException | None = None
    for first in range(len(nodes)):
        ordered = nodes[first:] + nodes[:first]
        connection = ClusterConnection(ordered[0], nodes=ordered, **kwargs)
        try:
            await connection.connect()
        except CONNECTION_EXCEPTIONS as exc:
            failure = exc
            log.warning("broker node %s:%s unreachable at start: %r", ordered[0].host, ordered[0].port, exc)
            await connection.close()
            continue
        return connection
    assert failure is not None
    raise failure
