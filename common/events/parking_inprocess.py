"""The parking lot in embedded mode: the parked messages live in the in-process bus and its
parking-lot file; a replay takes the message out of the list at once and delivers it to
its service again in the background.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from common.events.inprocess import InProcessBus, ParkedMessage
from common.events.parking import (
    KEPT_SHOWN,
    Backlog,
    NotParked,
    ParkedDetail,
    ParkedEvent,
    Replayed,
    ReplayRefused,
    ServiceBacklog,
    detailed,
    forgotten,
    parked_event,
    refuse_if_forgotten,
)

log = logging.getLogger(__name__)


class InProcessParkingLot:
    kind = "in-process"

    def __init__(self, bus: InProcessBus) -> None:
        self._bus = bus

    def known_services(self, *, configured: Sequence[str]) -> list[str]:
        # One process: the bus knows every service that subscribed in it.
        return sorted(set(self._bus.services()) | {item.service for item in self._bus.parked})

    async def backlog(self, *, services: Sequence[str]) -> Backlog:
        parked: dict[str, int] = {}
        for item in self._bus.parked:
            parked[item.service] = parked.get(item.service, 0) + 1
        names = sorted(set(services) & (set(self._bus.services()) | set(parked)))
        # Delivery is a call: nothing waits in a queue, and retries run inside the call.
        rows = [
            ServiceBacklog(
                service=name,
                queue=f"in-process:{name}",
                exists=True,
                ready=0,
                unacked=0,
                consumers=1 if self._bus.is_consuming(name) else 0,
                retrying=0,
                parked=parked.get(name, 0),
            )
            for name in names
        ]
        return Backlog(self.kind, rows, None)

    async def parked(self, *, service: str, limit: int) -> list[ParkedEvent]:
        return [_inprocess_parked(item) for item in self._bus.parked if item.service == service][:limit]

    async def inspect(self, *, service: str, parked_id: str) -> ParkedDetail:
        for item in self._bus.parked:
            if item.service == service and str(item.id) == parked_id:
                return detailed(_inprocess_parked(item), body=item.body, headers={})
        raise NotParked(f"no parked message {parked_id} of {service}")

    async def replay(
        self, *, service: str, parked_id: str, requested_by: str, remembered_since: datetime | None
    ) -> ParkedEvent:
        if not parked_id.isdigit():
            raise NotParked(f"no parked message {parked_id} of {service}")
        for item in self._bus.parked:
            if item.service == service and item.id == int(parked_id):
                refuse_if_forgotten(_inprocess_parked(item), remembered_since=remembered_since)
        try:
            taken = self._bus.take_parked(service=service, parked_id=int(parked_id))
        except LookupError as exc:
            raise NotParked(str(exc)) from exc
        except RuntimeError as exc:
            raise ReplayRefused(str(exc)) from exc
        self._bus.replay(taken)
        log.warning(
            "parked event replayed", extra={"service": service, "parked_id": parked_id, "requested_by": requested_by}
        )
        return _inprocess_parked(taken)

    async def replay_all(
        self, *, service: str, limit: int, requested_by: str, remembered_since: datetime | None
    ) -> Replayed:
        waiting = [item for item in self._bus.parked if item.service == service]
        replayed: list[ParkedEvent] = []
        kept: list[ParkedEvent] = []
        for item in waiting:
            if len(replayed) >= limit:
                break
            shown = _inprocess_parked(item)
            if forgotten(shown, remembered_since=remembered_since):
                kept.append(shown)
                continue
            try:
                replayed.append(
                    await self.replay(
                        service=service, parked_id=str(item.id), requested_by=requested_by, remembered_since=None
                    )
                )
            except NotParked:
                continue  # replayed by someone else meanwhile
        return Replayed(replayed=replayed, kept=kept[:KEPT_SHOWN], kept_count=len(kept))


def _inprocess_parked(item: ParkedMessage) -> ParkedEvent:
    return parked_event(
        service=item.service,
        parked_id=str(item.id),
        body=item.body,
        reason=item.reason,
        parked_at=datetime.fromtimestamp(item.parked_at, tz=UTC) if item.parked_at else None,
        attempts=None,
        replays=0,
        fallback_routing_key=item.routing_key,
    )
