"""An asyncio circuit breaker on pybreaker's state machine.

pybreaker gives the states, counters, listeners and (optionally Redis-shared) storage,
but its decorator does nothing useful for ``async def`` and ``calling()`` lets every
concurrent caller through while half-open. Here the state transitions go through
pybreaker's public API, and admission is ours: while open, calls fail fast without
touching the network; once the reset timeout passed, exactly one probe is admitted and
everybody else still fails fast until the probe has decided.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pybreaker

from common.observability import BREAKER_STATE_VALUE, Metrics
from common.settings import PlatformSettings

T = TypeVar("T")


class CircuitOpenError(Exception):
    """Refused without trying: the breaker is open (or its single probe is in flight)."""

    def __init__(self, name: str, retry_after_s: float) -> None:
        super().__init__(f"circuit {name!r} is open; retry in {retry_after_s:.1f}s")
        self.name = name
        self.retry_after_s = retry_after_s


class _MetricsListener(pybreaker.CircuitBreakerListener):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        self._metrics.breaker_state.labels(cb.name).set(BREAKER_STATE_VALUE.get(new_state.name, -1))


class AsyncCircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        fail_max: int = 5,
        reset_timeout_s: float = 10.0,
        exclude: Iterable[type[BaseException]] = (),
        metrics: Metrics | None = None,
        storage: pybreaker.CircuitBreakerStorage | None = None,
    ) -> None:
        self.name = name
        self._storage = storage or pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        listeners = [_MetricsListener(metrics)] if metrics else []
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout_s,
            exclude=list(exclude),
            listeners=listeners,
            state_storage=self._storage,
            name=name,
        )
        self._metrics = metrics
        self._probe_in_flight = False
        if metrics:
            metrics.breaker_state.labels(name).set(0)

    @property
    def state(self) -> str:
        return str(self._breaker.current_state)

    @property
    def fail_counter(self) -> int:
        return int(self._breaker.fail_counter)

    def retry_after_s(self) -> float:
        opened_at: datetime | None = self._storage.opened_at
        if opened_at is None:
            return 0.0
        elapsed = (datetime.now(UTC) - opened_at).total_seconds()
        return max(0.0, float(self._breaker.reset_timeout) - elapsed)

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "failures": self.fail_counter,
            "retry_after_s": round(self.retry_after_s(), 3) if self.state == pybreaker.STATE_OPEN else 0.0,
        }

    async def call(
        self,
        operation: Callable[[], Awaitable[T]],
        *,
        is_failure: Callable[[T], bool] | None = None,
    ) -> T:
        """Run ``operation`` under the breaker.

        ``is_failure`` marks a returned value (an HTTP 503, say) as a failure without
        turning it into an exception; the value is still returned to the caller.
        """
        probe = self._admit()
        try:
            result = await operation()
        except asyncio.CancelledError:
            raise  # neither success nor failure: the caller gave up
        except BaseException as exc:
            if self._breaker.is_system_error(exc):
                self._on_failure()
            else:
                self._on_success()
            raise
        else:
            if is_failure is not None and is_failure(result):
                self._on_failure()
            else:
                self._on_success()
            return result
        finally:
            if probe:
                self._probe_in_flight = False

    def _admit(self) -> bool:
        state = self._breaker.current_state
        if state == pybreaker.STATE_CLOSED:
            return False
        if state == pybreaker.STATE_OPEN:
            remaining = self.retry_after_s()
            if remaining > 0:
                self._reject(remaining)
            self._breaker.half_open()
        if self._probe_in_flight:
            self._reject(self.retry_after_s())
        self._probe_in_flight = True
        return True

    def _reject(self, retry_after_s: float) -> None:
        if self._metrics:
            self._metrics.breaker_rejections.labels(self.name).inc()
        raise CircuitOpenError(self.name, retry_after_s)

    def _on_failure(self) -> None:
        self._storage.increment_counter()
        state = self._breaker.current_state
        if state == pybreaker.STATE_HALF_OPEN or (
            state == pybreaker.STATE_CLOSED and self._storage.counter >= self._breaker.fail_max
        ):
            self._breaker.open()

    def _on_success(self) -> None:
        self._storage.reset_counter()
        if self._breaker.current_state == pybreaker.STATE_HALF_OPEN:
            self._storage.increment_success_counter()
            if self._storage.success_counter >= self._breaker.success_threshold:
                self._breaker.close()


def breaker_for(name: str, settings: PlatformSettings, metrics: Metrics | None = None) -> AsyncCircuitBreaker:
    """A breaker with the platform's configured thresholds."""
    return AsyncCircuitBreaker(
        name, fail_max=settings.breaker_fail_max, reset_timeout_s=settings.breaker_reset_timeout_s, metrics=metrics
    )
