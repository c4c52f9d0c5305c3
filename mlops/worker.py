"""The training worker: ``smartgym serve mlops-worker``.

A synchronous pika consumer, because the work is CPU-bound and one job at a time: it
takes ``TrainingRequested`` from its own durable quorum queue (bound to the bus's events
exchange), with a prefetch of one. The job runs in a thread while this thread keeps the
AMQP connection alive (heartbeats); the message is acknowledged only after the job's
result committed (see :mod:`mlops.jobs` for why that gives exactly one completion).

If the broker goes away mid-job, the job still finishes and commits; the worker then
reconnects, gets the unacknowledged message again, finds the run finished and
acknowledges it. If the worker is killed mid-job, the message returns to the queue and
the next worker waits out the dead one's lease, then takes the job over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions

from common.events.envelope import MalformedEvent
from contracts import CATALOG, TrainingRequested
from mlops import jobs
from mlops.settings import MlopsSettings

log = logging.getLogger(__name__)

DELIVERY_LIMIT = 50


@dataclass(frozen=True)
class QueueNames:
    exchange: str
    unrouted: str
    queue: str


def queue_names(settings: MlopsSettings) -> QueueNames:
    namespace = settings.bus_namespace
    return QueueNames(f"{namespace}.events", f"{namespace}.unrouted", f"{namespace}.{settings.mlops_training_queue}")


def declare(channel: Any, names: QueueNames) -> None:
    """The training queue, bound to the events exchange (declared as the bus declares it,
    so either side may come first)."""
    channel.exchange_declare(names.unrouted, exchange_type="fanout", durable=True)
    channel.exchange_declare(
        names.exchange, exchange_type="topic", durable=True, arguments={"alternate-exchange": names.unrouted}
    )
    channel.queue_declare(
        names.queue,
        durable=True,
        arguments={"x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT},
    )
    channel.queue_bind(names.queue, names.exchange, routing_key=TrainingRequested.routing_key())


def declare_training_queue(settings: MlopsSettings) -> None:
    """Declare the queue from the API side too: a job queued before any worker ever
    started must not be routed nowhere."""
    if settings.broker_url is None:
        return
    connection = pika.BlockingConnection(pika.URLParameters(str(settings.broker_url)))
    try:
        declare(connection.channel(), queue_names(settings))
    finally:
        connection.close()


class TrainingWorker:
    def __init__(self, settings: MlopsSettings, *, worker_id: str | None = None) -> None:
        if settings.broker_url is None:
            raise ValueError("the training worker needs SMARTGYM_BROKER_URL")
        self.settings = settings
        self.worker_id = worker_id or settings.mlops_worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.names = queue_names(settings)
        self.stop = threading.Event()

    def run(self) -> int:
        """Consume until stopped; reconnect after broker outages."""
        delay = 0.5
        while not self.stop.is_set():
            try:
                self._consume()
                delay = 0.5
            except (pika.exceptions.AMQPError, OSError) as exc:
                if self.stop.is_set():
                    break
                log.warning("broker connection lost (%s); reconnecting in %.1fs", type(exc).__name__, delay)
                self.stop.wait(delay)
                delay = min(delay * 2, 10.0)
        return 0

    def _consume(self) -> None:
        parameters = pika.URLParameters(str(self.settings.broker_url))
        parameters.heartbeat = 30
        parameters.blocked_connection_timeout = 60
        connection = pika.BlockingConnection(parameters)
        try:
            channel = connection.channel()
            declare(channel, self.names)
            channel.basic_qos(prefetch_count=1)  # one job at a time per worker
            log.info("training worker %s consuming %s", self.worker_id, self.names.queue)
            for method, _properties, body in channel.consume(self.names.queue, inactivity_timeout=0.5):
                if self.stop.is_set():
                    break
                if method is None:
                    continue
                self._handle(connection, channel, method.delivery_tag, body)
        finally:
            with contextlib.suppress(Exception):
                connection.close()

    def _handle(self, connection: Any, channel: Any, tag: int, body: bytes) -> None:
        try:
            request = CATALOG.decode(body)
        except MalformedEvent as exc:
            request = None
            log.error("not a training request (%s); dropped", exc.reason)
        if not isinstance(request, TrainingRequested):
            channel.basic_nack(tag, requeue=False)
            return
        outcome: list[str] = []
        thread = threading.Thread(
            target=self._run_job, args=(request.run_id, outcome), name=f"job-{request.run_id}", daemon=True
        )
        thread.start()
        try:
            # Keep the connection alive (heartbeats) while the job runs.
            while thread.is_alive():
                connection.process_data_events(time_limit=0.5)
        except (pika.exceptions.AMQPError, OSError):
            # The broker went away: the job still finishes and commits; its message comes
            # back after the reconnection and is acknowledged then (the run is finished).
            thread.join()
            raise
        log.info("run %s: %s", request.run_id, outcome[0] if outcome else "no outcome")
        if outcome and outcome[0] == "busy":
            channel.basic_nack(tag, requeue=True)  # stopping while another worker holds it
            return
        channel.basic_ack(tag)

    def _run_job(self, run_id: uuid.UUID, outcome: list[str]) -> None:
        async def work() -> str:
            resources = jobs.Resources.open(self.settings)
            try:
                return await jobs.execute(resources=resources, run_id=run_id, worker=self.worker_id, stop=self.stop)
            finally:
                await resources.close()

        delay = 0.5
        while True:
            try:
                outcome.append(asyncio.run(work()))
                return
            except Exception:
                # e.g. the database is down: keep the message and try again, unless stopping.
                log.exception("run %s: the job could not run; retrying in %.1fs", run_id, delay)
                if self.stop.wait(delay):
                    outcome.append("busy")
                    return
                delay = min(delay * 2, 10.0)


def main() -> int:
    settings = MlopsSettings()
    logging.getLogger("pika").setLevel(logging.WARNING)  # its INFO is every frame of a connection
    worker = TrainingWorker(settings)

    def stop(_signum: int, _frame: Any) -> None:
        # Finish the job in hand (its lease would otherwise hold it up for a while), then exit.
        worker.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return worker.run()
