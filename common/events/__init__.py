"""Integration events: schemas, the bus, the outbox and idempotent consumers."""

from common.events.bus import EventBus, PublishError, Subscription, Subscriptions
from common.events.envelope import Event, EventCatalog, MalformedEvent, OutgoingMessage
from common.events.revocations import TokensRevoked

__all__ = [
    "Event",
    "EventBus",
    "EventCatalog",
    "MalformedEvent",
    "OutgoingMessage",
    "PublishError",
    "Subscription",
    "Subscriptions",
    "TokensRevoked",
]
