"""Events monitoring consumes: access's view of its gates' serial lines."""

from __future__ import annotations

from common.events.bus import Subscriptions
from common.events.outbox import UnitOfWork
from contracts import GateStatusChanged
from monitoring.watch import EquipmentWatch


def subscriptions(watch: EquipmentWatch) -> Subscriptions:
    async def gate_line_changed(event: GateStatusChanged, _uow: UnitOfWork) -> None:
        # A gate registered under its gate id is judged by access's first-hand report of
        # its line; a redelivered report changes nothing (the health is already set).
        if not watch.loaded:
            # Not yet knowing the gates, the report would be dropped: have it redelivered.
            raise RuntimeError("the equipment registry is still loading")
        up = event.line == "up"
        reason = "serial line up" if up else f"serial line down: {event.detail}"[:200]
        watch.on_report(event.gate_id, up, reason, branch_id=event.branch_id)

    subs = Subscriptions("monitoring")
    subs.add(GateStatusChanged, gate_line_changed, name="gate_line_changed")
    return subs
