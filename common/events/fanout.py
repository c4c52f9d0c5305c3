"""Transient fan-out between replicas over RabbitMQ: one exclusive queue per replica, and
a replica sends another only the topics that one follows.

For live data that is not a domain event (a runner's position a second ago): messages
are non-persistent, unconfirmed and outside the outbox. Order is kept per topic: one
publishing channel per replica, one consumer per queue.

Replicas tell each other which topics they follow (a small fanout exchange of interest
notices), so a message nobody elsewhere follows — most runs have no watcher on another
replica — is never published at all. A replica that starts says hello and the others
answer with what they follow.

**No gap after a subscription.** ``interested`` returns only when every known replica
has acknowledged the notice, and each sends its acknowledgement down the same stream as
its messages: whatever a replica publishes on the topic after that reaches this one. A
caller that tells its client "subscribed" after ``interested`` returned therefore misses
nothing sent afterwards. (Before, a notice still in flight let the first positions after
"watching" go nowhere.) A replica that does not answer within ``ack_timeout_s`` is taken
for dead (a killed replica says no goodbye) and is no longer waited for, until it is
heard from again.

**Batches, not a publish per message.** A publish is a round of the event loop through
the AMQP client's writer; awaiting one per position let a replica's publishing fall
behind its runners at a few hundred positions a second on a loaded machine (positions
seconds late, and cut off by a benchmark's drain). Messages are buffered per
destination replica and sent, in order, as one AMQP message: at once after a quiet
spell, then at most one every ``flush_window_s`` while messages keep coming, or sooner
when one replica's batch reaches ``batch_entries``; replicas whose batches are alike
(they follow the same topics) share one publish. ``publish`` itself does not wait.

A batch costs about a millisecond of CPU over the sender, the broker and the receiver,
whatever it carries: measured, a 25 ms window sent batches of 1-5 positions and three
replicas cost 1.5-2.8 times one. The window is therefore the longest a position may
linger (100 ms by default, half of the 200 ms p99 budget of point → watcher), and the
size cap keeps a busy replica's batches, and the latency of their first entries, from
growing with load.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any, cast

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustConnection
from aiormq.abc import DeliveredMessage

from common.events.cluster import connect_cluster

log = logging.getLogger(__name__)

OnMessage = Callable[[str, str], None]

#: The topic of an acknowledgement inside a batch (no real topic is empty).
ACK = ""
#: Messages held for one replica while the broker cannot take them; older ones are
#: dropped beyond this (positions are transient, the stored track is the record).
MAX_BUFFERED = 100_000


def _batch_properties(sender: str, *, bcc: list[str] | None = None) -> aiormq.spec.Basic.Properties:
    """Transient, from ``sender``; ``bcc``: the other replicas' queues the batch also goes to."""
    headers: dict[str, Any] | None = {"BCC": bcc} if bcc else None
    return aiormq.spec.Basic.Properties(app_id=sender, delivery_mode=1, message_id=sender, headers=headers)


class TopicFanout:
    def __init__(
        self,
        url: str | Sequence[str],
        *,
        exchange: str,
        replica: str,
        on_message: OnMessage,
        flush_window_s: float = 0.1,
        batch_entries: int = 128,
        ack_timeout_s: float = 2.0,
    ) -> None:
        self._url = url
        self._prefix = exchange
        self._interest_name = f"{exchange}.interest"
        self._replica = replica
        self._on_message_callback = on_message
        self._flush_window_s = flush_window_s
        self._batch_entries = batch_entries
        self._ack_timeout_s = ack_timeout_s
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._interest: aio_pika.abc.AbstractExchange | None = None
        self._bound: set[str] = set()
        self._remote: dict[str, set[str]] = {}  # topic -> other replicas that follow it
        self._peers: set[str] = set()  # other replicas heard from
        self._asks: dict[str, tuple[set[str], asyncio.Future[None]]] = {}
        self._outbox: dict[str, list[tuple[str, str]]] = {}
        self._wake = asyncio.Event()
        self._send_now = asyncio.Event()  # a full batch, or an acknowledgement someone waits for
        self._flusher: asyncio.Task[None] | None = None
        # Every batch carries the same properties; a message id set here spares the
        # client a random one per batch (nothing reads it).
        self._properties = _batch_properties(replica)
        self.dropped = 0  # messages dropped because a follower fell behind
        self.publishes = 0  # AMQP messages sent with batches (one may reach several replicas)

    def _queue_of(self, replica: str) -> str:
        return f"{self._prefix}.{replica}"

    async def start(self) -> None:
        self._connection = await connect_cluster(self._url)
        channel = self._channel = await self._connection.channel(publisher_confirms=False)
        self._interest = await channel.declare_exchange(self._interest_name, aio_pika.ExchangeType.FANOUT, durable=True)
        # Exclusive and auto-deleted: they live exactly as long as this replica's connection.
        await channel.declare_queue(self._queue_of(self._replica), exclusive=True, auto_delete=True)
        await self._consume_batches()
        # The channel restores its queues after a reconnect, not a consumer of the client's
        # own channel: this one is added again.
        channel.reopen_callbacks.add(self._on_reopen)
        notices = await channel.declare_queue(f"{self._queue_of(self._replica)}.interest", exclusive=True,
                                              auto_delete=True)  # fmt: skip
        await notices.bind(self._interest)
        await notices.consume(self._on_notice, no_ack=True)
        self._flusher = asyncio.create_task(self._flush_forever())
        await self._announce({"hello": True})

    async def close(self) -> None:
        if self._flusher is not None:
            await self._flush()
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._announce({"bye": True})
            await self._connection.close()

    # -- publishing -----------------------------------------------------------------------

    def publish(self, topic: str, message: str) -> None:
        followers = self._remote.get(topic)
        if not followers:
            return
        for replica in followers:
            self._enqueue(replica, topic, message)

    def _enqueue(self, replica: str, topic: str, message: str) -> None:
        pending = self._outbox.setdefault(replica, [])
        if len(pending) >= MAX_BUFFERED:
            half = len(pending) // 2
            del pending[:half]
            self.dropped += half
            log.warning("fan-out to %s is behind; dropped the oldest messages", replica)
        pending.append((topic, message))
        self._wake.set()
        if len(pending) >= self._batch_entries:
            self._send_now.set()

    async def _flush_forever(self) -> None:
        # The first message after a quiet spell leaves at once; what comes within the
        # window after a send waits for the next one (one AMQP message instead of many),
        # unless a batch fills first.
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._send_now.clear()
            await self._flush()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._flush_window_s):
                    await self._send_now.wait()

    async def _flush(self) -> None:
        outbox, self._outbox = self._outbox, {}
        if self._channel is None or not outbox:
            return
        try:
            # The AMQP client's own channel: aio-pika's Message and publish wrapper (a
            # random message id, property copies, a wait for the socket to drain) cost
            # more than the publish itself; nothing here needs them (transient, no
            # confirms, no return).
            channel = cast(aiormq.Channel, await self._channel.get_underlay_channel())
        except Exception:
            log.warning("fan-out batches to %s not sent: no channel", sorted(outbox), exc_info=True)
            return
        # Replicas that follow the same topics are sent the same batch: one publish
        # reaches them all (RabbitMQ's sender-selected distribution, the BCC header), so
        # the sender and the broker take in one message instead of one per replica.
        alike: dict[tuple[tuple[str, str], ...], list[str]] = {}
        if len(outbox) == 1:  # one follower replica, the common case: nothing to compare
            [(replica, entries)] = outbox.items()
            alike[tuple(entries)] = [replica]
        else:
            for replica, entries in outbox.items():
                alike.setdefault(tuple(entries), []).append(replica)
        for batch, replicas in alike.items():
            first, *others = replicas
            properties = (
                _batch_properties(self._replica, bcc=[self._queue_of(replica) for replica in others])
                if others
                else self._properties
            )
            try:
                await channel.basic_publish(
                    json.dumps(batch, separators=(",", ":")).encode(),
                    # A replica that died a moment ago has no queue: nothing comes back.
                    routing_key=self._queue_of(first),
                    properties=properties,
                    wait=False,
                )
                self.publishes += 1
            except Exception:
                log.warning("fan-out batch to %s not sent", sorted(replicas), exc_info=True)

    # -- interest -------------------------------------------------------------------------

    async def interested(self, topic: str) -> None:
        self._bound.add(topic)
        waiting = set(self._peers)
        if not waiting:
            await self._announce({"topic": topic, "on": True})
            return
        ask = uuid.uuid4().hex
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._asks[ask] = (waiting, done)
        try:
            await self._announce({"topic": topic, "on": True, "ask": ask})
            await asyncio.wait_for(asyncio.shield(done), self._ack_timeout_s)
        except TimeoutError:
            silent = self._asks[ask][0]
            log.warning("no answer from replica(s) %s about %s; taken for gone", sorted(silent), topic)
            self._peers -= silent
        finally:
            self._asks.pop(ask, None)

    async def not_interested(self, topic: str) -> None:
        if topic in self._bound:
            self._bound.discard(topic)
            await self._announce({"topic": topic, "on": False})

    async def _announce(self, notice: dict[str, object]) -> None:
        if self._interest is not None:
            body = json.dumps({"replica": self._replica, **notice}).encode()
            await self._interest.publish(aio_pika.Message(body), routing_key="", mandatory=False)

    async def _on_notice(self, message: AbstractIncomingMessage) -> None:
        try:
            notice = json.loads(message.body)
            replica = str(notice["replica"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed interest notice")
            return
        if replica == self._replica:
            return
        if notice.get("bye"):
            self._forget(replica)
            return
        known = replica in self._peers
        self._peers.add(replica)
        if notice.get("hello"):
            # A replica (re)started: it must know this one even if nothing is followed here.
            await self._announce({"here": True})
            for topic in list(self._bound):
                await self._announce({"topic": topic, "on": True})
            return
        if notice.get("here"):
            if not known:
                for topic in list(self._bound):
                    await self._announce({"topic": topic, "on": True})
            return
        topic = str(notice.get("topic", ""))
        if not topic:
            return
        if notice.get("on"):
            self._remote.setdefault(topic, set()).add(replica)
            ask = notice.get("ask")
            if isinstance(ask, str):
                # Behind every message this replica already queued for it, ahead of the next;
                # sent without waiting for the window, as a watcher waits for it.
                self._enqueue(replica, ACK, ask)
                self._send_now.set()
        else:
            followers = self._remote.get(topic)
            if followers is not None:
                followers.discard(replica)
                if not followers:
                    del self._remote[topic]

    def _forget(self, replica: str) -> None:
        self._peers.discard(replica)
        self._outbox.pop(replica, None)
        for topic in [topic for topic, followers in self._remote.items() if replica in followers]:
            self._remote[topic].discard(replica)
            if not self._remote[topic]:
                del self._remote[topic]

    # -- receiving ------------------------------------------------------------------------

    async def _consume_batches(self) -> None:
        # On the AMQP client's own channel: aio-pika would wrap each batch in a message
        # object and a task of its own, beside the client's task, for nothing used here.
        if self._channel is not None:
            channel = await self._channel.get_underlay_channel()
            await channel.basic_consume(self._queue_of(self._replica), self._on_batch, no_ack=True)

    async def _on_reopen(self, _channel: object) -> None:
        try:
            await self._consume_batches()
        except Exception:
            log.warning("fan-out consumer not restored", exc_info=True)

    async def _on_batch(self, message: DeliveredMessage) -> None:
        sender = message.header.properties.app_id
        if sender is None or sender == self._replica:
            return
        try:
            entries = json.loads(message.body)
        except ValueError:
            log.warning("ignored a malformed fan-out batch from %s", sender)
            return
        self._peers.add(sender)
        on_message = self._on_message_callback
        for topic, text in entries:
            if topic == ACK:
                waiting = self._asks.get(text)
                if waiting is not None:
                    waiting[0].discard(sender)
                    if not waiting[0] and not waiting[1].done():
                        waiting[1].set_result(None)
                continue
            try:
                on_message(topic, text)
            except Exception:
                log.warning("a fan-out message on %s failed", topic, exc_info=True)
