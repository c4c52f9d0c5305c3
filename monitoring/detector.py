"""Fault detection for one device, as a pure state machine (no I/O, no clock of its own).

Two signals feed it: ping results (service → device, every few seconds) and heartbeats
(device → service, every few minutes). A device turns **faulty** after ``fail_after``
failed pings in a row, or when its heartbeat is overdue; it turns **ok** again only
after ``recover_after`` good observations in a row (hysteresis: a flapping device
raises one fault, not a storm). While in a maintenance window nothing is announced, but
the state is still tracked, so the truth is known when the window ends.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum


class Health(StrEnum):
    UNKNOWN = "unknown"  # nothing heard yet
    OK = "ok"
    FAULTY = "faulty"


@dataclass(frozen=True)
class Rules:
    fail_after: int = 2  # consecutive failed pings
    recover_after: int = 3  # consecutive good observations
    heartbeat_period: timedelta | None = None  # None: the device sends no heartbeats
    heartbeat_grace: float = 1.5  # overdue after period * grace


@dataclass(frozen=True)
class Transition:
    previous: Health
    health: Health
    reason: str
    at: datetime
    announce: bool  # False inside a maintenance window


@dataclass
class DeviceHealth:
    rules: Rules
    health: Health = Health.UNKNOWN
    failures_in_a_row: int = 0
    successes_in_a_row: int = 0
    last_heartbeat: datetime | None = None
    # The device's last sign of life (an answered ping, an ok heartbeat): where the silence
    # that a fault reports began, for the fault-to-alert latency.
    last_contact: datetime | None = None
    last_reason: str = ""
    maintenance_until: datetime | None = None
    # The last few changes, for debugging a device; the audit log in the database is the record.
    history: deque[Transition] = field(default_factory=lambda: deque(maxlen=32))

    def ping(self, ok: bool, at: datetime, detail: str = "") -> Transition | None:
        if ok:
            return self._good(at, "ping answered")
        return self._bad(at, f"ping failed: {detail}" if detail else "ping failed")

    def heartbeat(self, status: str, at: datetime) -> Transition | None:
        self.last_heartbeat = at
        if status == "ok":
            return self._good(at, "heartbeat ok")
        # A device that reports its own fault is believed at once.
        return self._become(Health.FAULTY, at, f"device reports {status}")

    def report(self, ok: bool, at: datetime, reason: str) -> Transition | None:
        """A first-hand report from the component that drives the device (a gate's serial
        line seen by access): believed at once, both ways."""
        self.failures_in_a_row = self.successes_in_a_row = 0
        return self._become(Health.OK if ok else Health.FAULTY, at, reason)

    def check_overdue(self, now: datetime) -> Transition | None:
        period = self.rules.heartbeat_period
        if period is None or self.last_heartbeat is None or self.health is Health.FAULTY:
            return None
        if now - self.last_heartbeat > period * self.rules.heartbeat_grace:
            return self._become(Health.FAULTY, now, "heartbeat overdue")
        return None

    def in_maintenance(self, at: datetime) -> bool:
        return self.maintenance_until is not None and at < self.maintenance_until

    def _good(self, at: datetime, reason: str) -> Transition | None:
        self.last_contact = at
        self.failures_in_a_row = 0
        self.successes_in_a_row += 1
        if self.health is Health.OK:
            return None
        if self.health is Health.UNKNOWN or self.successes_in_a_row >= self.rules.recover_after:
            return self._become(Health.OK, at, reason)
        return None

    def _bad(self, at: datetime, reason: str) -> Transition | None:
        self.successes_in_a_row = 0
        self.failures_in_a_row += 1
        if self.health is not Health.FAULTY and self.failures_in_a_row >= self.rules.fail_after:
            return self._become(Health.FAULTY, at, reason)
        return None

    def _become(self, health: Health, at: datetime, reason: str) -> Transition | None:
        if health is self.health:
            return None
        previous = self.health
        self.health, self.last_reason = health, reason
        self.successes_in_a_row = 0 if health is Health.FAULTY else self.successes_in_a_row
        # Unknown → ok is learning, not news; everything else is announced (outside maintenance).
        announce = not self.in_maintenance(at) and not (previous is Health.UNKNOWN and health is Health.OK)
        transition = Transition(previous, health, reason, at, announce)
        self.history.append(transition)
        return transition
