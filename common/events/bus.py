"""The bus interface every service talks to, and the declaration of what a service consumes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from common.events.envelope import Event, OutgoingMessage

if TYPE_CHECKING:
    from common.events.outbox import UnitOfWork

E = TypeVar("E", bound=Event)

# What the bus calls: one decoded event in, effects committed (or an exception) out.
EventHandler = Callable[[Event], Awaitable[None]]
# What a service writes: the event plus the unit of work its effects commit in.
ServiceHandler = Callable[[E, "UnitOfWork"], Awaitable[None]]


@dataclass(frozen=True)
class Subscription:
    event_type: type[Event]
    handler: Callable[..., Awaitable[None]]
    consumer_name: str


@dataclass
class Subscriptions:
    """Every event one service consumes, declared in one place (its ``events.py``).

    The consumer name (``<service>.<handler>``) keys the processed-event inbox, so
    renaming a handler re-applies history: rename with care.
    """

    service: str
    items: list[Subscription] = field(default_factory=list)
    # Optional: applies several events in one transaction (set by the kernel's
    # idempotent binding). Buses that batch call it; if it raises they fall back to
    # the per-event handlers, which keep their own retry and parking.
    batch_handler: Callable[[Sequence[Event]], Awaitable[None]] | None = None
    _by_type: dict[type[Event], list[Subscription]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def add(self, event_type: type[E], handler: ServiceHandler[E], *, name: str) -> None:
        """Declare a service handler; the kernel runs it idempotently in a unit of work."""
        self._append(Subscription(event_type, handler, f"{self.service}.{name}"))

    def add_bus_handler(self, event_type: type[E], handler: Callable[[E], Awaitable[None]], *, name: str) -> None:
        """Declare a handler the bus calls directly (no database, no inbox)."""
        self._append(Subscription(event_type, handler, f"{self.service}.{name}"))

    def _append(self, subscription: Subscription) -> None:
        if any(item.consumer_name == subscription.consumer_name for item in self.items):
            raise ValueError(f"consumer {subscription.consumer_name} declared twice")
        self.items.append(subscription)
        self._by_type.clear()

    @property
    def routing_keys(self) -> list[str]:
        return sorted({item.event_type.routing_key() for item in self.items})

    def handlers_for(self, event: Event) -> list[Subscription]:
        # Asked for every delivery, a few times: answered once per event type.
        found = self._by_type.get(type(event))
        if found is None:
            found = self._by_type[type(event)] = [item for item in self.items if isinstance(event, item.event_type)]
        return found


class PublishError(RuntimeError):
    """The broker did not confirm a message; the caller keeps it and tries again later."""


class EventBus(Protocol):
    """What a service needs from the message bus."""

    async def start(self) -> None: ...

    async def publish_many(self, messages: Sequence[OutgoingMessage]) -> None:
        """Hand ``messages`` to the bus; returns only once every one is durable (confirmed)."""

    async def subscribe(self, subscriptions: Subscriptions) -> None:
        """Declare the service's queue and start delivering to its handlers."""

    async def stop_consuming(self, service: str) -> None:
        """Stop taking new messages for ``service`` and wait for handlers in flight."""

    async def broadcast(
        self,
        event_types: Sequence[type[Event]],
        handler: Callable[[Event], Awaitable[None]],
        *,
        on_connected: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Deliver every event of ``event_types`` to *this process* too (not one replica of
        the service, as a subscription does): for in-memory state every replica must
        keep, such as revoked credentials or the model it serves. Best effort, no retries:
        the handler must not fail.

        Events published while the process was cut off from the broker are not delivered
        later; ``on_connected`` runs once the subscription is in place and again after
        every reconnection, so the caller can re-read what it may have missed."""

    async def close(self) -> None: ...

    def health(self) -> dict[str, Any]:
        """A small JSON-able report; ``ok`` is False when the bus cannot publish."""
