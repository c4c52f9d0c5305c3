"""Broker housekeeping for tests: remove a namespace's queues and exchanges, read a queue."""

from __future__ import annotations

import subprocess

import aio_pika


def _queue_names() -> list[str]:
    return subprocess.run(
        ["rabbitmqctl", "list_queues", "name", "--quiet", "--no-table-headers"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()


def _queues_of(namespace: str) -> list[str]:
    return [name for name in _queue_names() if name.startswith(f"{namespace}.")]


async def delete_queues_with_prefixes(url: str, prefixes: tuple[str, ...]) -> int:
    """Delete every queue whose name starts with one of ``prefixes``; returns how many."""
    doomed = [name for name in _queue_names() if name.startswith(prefixes)]
    connection = await aio_pika.connect(url)
    async with connection:
        for queue in doomed:
            channel = await connection.channel()  # a failed delete closes its channel
            try:
                await channel.queue_delete(queue)
            except aio_pika.exceptions.AMQPError:
                continue
    return len(doomed)


async def delete_namespace(url: str, namespace: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for queue in _queues_of(namespace):
            await channel.queue_delete(queue)
        for suffix in ("events", "unrouted", "retry", "parking"):
            await channel.exchange_delete(f"{namespace}.{suffix}")


async def drain(url: str, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Every message currently in ``queue`` (acked, so the queue ends empty)."""
    messages: list[aio_pika.abc.AbstractIncomingMessage] = []
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.get_queue(queue, ensure=True)
        while True:
            message = await declared.get(no_ack=True, fail=False)
            if message is None:
                return messages
            messages.append(message)


async def publish_raw(url: str, exchange: str, routing_key: str, body: bytes) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        target = await channel.get_exchange(exchange)
        await target.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=routing_key
        )
