"""What a gate decision is: the decision itself (stored with its Idempotency-Key and
replayed from it), the evidence recognition saw, and the decision metrics."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Histogram

from access.rules import Reason
from common.kernel import ServiceKernel
from contracts import EntryMethod


class UnknownGate(Exception):
    pass


@dataclass(frozen=True)
class Evidence:
    """What recognition saw, kept with the decision (face entries only)."""

    detail: str | None = None
    similarity: float | None = None
    model: str | None = None
    cache: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


NO_EVIDENCE = Evidence()


@dataclass(frozen=True)
class Decision:
    attempt_id: uuid.UUID
    gate_id: str
    branch_id: str
    direction: str
    method: EntryMethod
    granted: bool
    reason: Reason
    member_id: uuid.UUID | None
    gate_result: str
    offline: bool
    latency_ms: float
    evidence: Evidence = NO_EVIDENCE
    replayed: bool = False  # handed back for a retried Idempotency-Key

    def stored(self) -> dict[str, object]:
        return {
            "attempt_id": str(self.attempt_id),
            "gate_id": self.gate_id,
            "branch_id": self.branch_id,
            "direction": self.direction,
            "method": self.method,
            "granted": self.granted,
            "reason": self.reason.value,
            "member_id": str(self.member_id) if self.member_id else None,
            "gate_result": self.gate_result,
            "offline": self.offline,
            "latency_ms": self.latency_ms,
            "evidence": {
                "detail": self.evidence.detail,
                "similarity": self.evidence.similarity,
                "model": self.evidence.model,
                "cache": self.evidence.cache,
                "timings_ms": self.evidence.timings_ms,
            },
        }

    @classmethod
    def replay(cls, stored: dict[str, Any]) -> Decision:
        member_id = stored["member_id"]
        return cls(
            attempt_id=uuid.UUID(stored["attempt_id"]),
            gate_id=stored["gate_id"],
            branch_id=stored["branch_id"],
            direction=stored["direction"],
            method=stored["method"],
            granted=stored["granted"],
            reason=Reason(stored["reason"]),
            member_id=uuid.UUID(member_id) if member_id else None,
            gate_result=stored["gate_result"],
            offline=stored["offline"],
            latency_ms=stored["latency_ms"],
            evidence=Evidence(**stored["evidence"]),
            replayed=True,
        )


class DecisionMetrics:
    def __init__(self, kernel: ServiceKernel) -> None:
        registry = kernel.metrics.registry
        self.latency = Histogram(
            "access_decision_seconds",
            "Request received to gate commanded and decision recorded.",
            ["method", "outcome"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.35, 0.5, 1, 2, 3),
            registry=registry,
        )
        self.attempts = Counter(
            "access_attempts", "Attempts at the gates.", ["method", "outcome", "reason"], registry=registry
        )
