"""Kernel pieces as separate processes, so tests can ``kill -9`` them.

python -m tests.support.workers relay   --db URL --broker URL --ns NS [--batch N] [--pace S]
python -m tests.support.workers consume --db URL --broker URL --ns NS [--delay S]
"""

from __future__ import annotations

import argparse
import asyncio

from common.db import Database
from common.events.outbox import OutboxRelay, UnitOfWork
from common.events.rabbitmq import RabbitMQBus
from common.observability import Metrics
from tests.support.ledger import CATALOG, TABLES, EntryRecorded, consumer_subscriptions, record_effect


class PacedBus:
    """Slows a bus down so a test can interleave faults with a long relay run."""

    def __init__(self, bus: RabbitMQBus, pace_s: float) -> None:
        self._bus = bus
        self._pace_s = pace_s

    def __getattr__(self, name: str):
        return getattr(self._bus, name)

    async def publish_many(self, messages) -> None:
        await self._bus.publish_many(messages)
        await asyncio.sleep(self._pace_s)


async def relay(args: argparse.Namespace) -> None:
    metrics = Metrics()
    bus = RabbitMQBus(args.broker, catalog=CATALOG, metrics=metrics, namespace=args.ns)
    await bus.start()
    database = Database(args.db)
    paced = PacedBus(bus, args.pace) if args.pace else bus
    relay = OutboxRelay(
        service="ledger",
        database=database,
        tables=TABLES,
        bus=paced,
        metrics=metrics,
        batch_size=args.batch,
        poll_interval_s=0.1,
    )
    relay.start()
    print("relay started", flush=True)
    await asyncio.Event().wait()


async def consume(args: argparse.Namespace) -> None:
    metrics = Metrics()
    bus = RabbitMQBus(args.broker, catalog=CATALOG, metrics=metrics, namespace=args.ns, prefetch=args.prefetch)
    await bus.start()
    database = Database(args.db)

    async def slow_record(event: EntryRecorded, uow: UnitOfWork) -> None:
        await record_effect(event, uow)
        await uow.session.flush()
        await asyncio.sleep(args.delay)  # killed here, the transaction never commits

    await bus.subscribe(consumer_subscriptions("ledger", database, metrics, handler=slow_record))
    print("consumer started", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["relay", "consume"])
    parser.add_argument("--db", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--ns", required=True)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--pace", type=float, default=0.0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--prefetch", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(relay(args) if args.role == "relay" else consume(args))


if __name__ == "__main__":
    main()
