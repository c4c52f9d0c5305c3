"""A batch of publishes handed to aiormq's writer as one frame set, each still confirmed.

aiormq's ``basic_publish`` takes the channel lock once per message, and a lock handed from
one waiter to the next wakes it on the following loop iteration: a batch of 500 costs 500
iterations, 500 tasks and 500 trips through the connection's 10-slot write queue. Under
load the relay spent most of its CPU there, and with other work on the loop (the
business transactions of the same process) every iteration also waits for that work.
:func:`publish_confirmed` takes the lock once, gives every message its delivery tag and
confirmation future exactly as ``basic_publish`` does (so aiormq's confirm, nack, return
and channel-close handling settle them unchanged), and queues the whole batch as one item.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiormq
from aiormq.abc import ChannelFrame
from pamqp import commands as spec
from pamqp.header import ContentHeader

from common.events.bus import PublishError

# AMQP's limit on a routing key (aiormq checks it per publish too).
MAX_ROUTING_KEY_BYTES = 255


async def publish_confirmed(
    channel: aiormq.Channel,
    *,
    exchange: str,
    messages: Sequence[tuple[str, bytes, spec.Basic.Properties]],
    confirm_timeout_s: float,
) -> list[BaseException | None]:
    """Publish ``(routing_key, body, properties)`` messages (persistent, mandatory) in
    order; returns one outcome per message: ``None`` when the broker confirmed it, else
    the error (a nack, a return, the channel closing, the timeout)."""
    if not channel.publisher_confirms:
        raise PublishError("publisher confirms are off on this channel")
    for routing_key, _, properties in messages:
        if len(routing_key.encode()) > MAX_ROUTING_KEY_BYTES:
            raise ValueError("Routing key too long (max 255 bytes)")
        if not properties.message_id:
            # Returns are matched to their publish by message id.
            raise ValueError("every message needs a message id")
    confirmations: list[asyncio.Future[object]] = []
    async with asyncio.timeout(confirm_timeout_s):
        async with channel._raise_on_channel_close(), channel.lock:
            first_tag = channel.delivery_tag + 1
            frames: list[object] = []
            for routing_key, body, properties in messages:
                channel.delivery_tag += 1
                confirmation = channel.create_future()
                channel.confirmations[channel.delivery_tag] = confirmation
                channel.message_id_delivery_tag[str(properties.message_id)] = channel.delivery_tag
                confirmations.append(confirmation)
                frames.append(spec.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=True))
                frames.append(ContentHeader(properties=properties, body_size=len(body)))
                frames.extend(channel._split_body(body))
            try:
                await channel.write_queue.put(
                    ChannelFrame.marshall(frames=frames, channel_number=channel.number)  # type: ignore[arg-type]
                )
            except BaseException:
                # Not queued, so the broker never sees these tags: give them back while
                # the lock is still held, as basic_publish does.
                for tag in range(first_tag, channel.delivery_tag + 1):
                    channel.confirmations.pop(tag, None)
                for (_, _, properties), confirmation in zip(messages, confirmations, strict=True):
                    if channel.message_id_delivery_tag.get(str(properties.message_id), 0) >= first_tag:
                        channel.message_id_delivery_tag.pop(str(properties.message_id), None)
                    confirmation.cancel()
                channel.delivery_tag = first_tag - 1
                raise
        for (_, _, properties), confirmation in zip(messages, confirmations, strict=True):
            confirmation.add_done_callback(_forget(channel, str(properties.message_id), first_tag))
            first_tag += 1
        answers = await asyncio.gather(*confirmations, return_exceptions=True)
    outcomes: list[BaseException | None] = []
    for answer in answers:
        if isinstance(answer, BaseException):
            outcomes.append(answer)
        elif isinstance(answer, spec.Basic.Ack):
            outcomes.append(None)
        else:
            outcomes.append(PublishError(f"broker answered {answer!r}"))
    return outcomes


def _forget(channel: aiormq.Channel, message_id: str, delivery_tag: int):  # type: ignore[no-untyped-def]
    def forget(_: asyncio.Future[object]) -> None:
        if channel.message_id_delivery_tag.get(message_id) == delivery_tag:
            channel.message_id_delivery_tag.pop(message_id)

    return forget
