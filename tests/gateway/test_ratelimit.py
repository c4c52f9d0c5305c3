"""The in-process moving windows behind `memory://` rate limits."""

from __future__ import annotations

from limits import parse

from gateway.ratelimit import MemoryWindows


def test_a_window_allows_its_limit_then_refuses_until_the_oldest_hit_leaves():
    windows = MemoryWindows()
    item = parse("5/second")
    assert [windows.hit(item, "svc", "p", now=100.0 + n * 0.1).allowed for n in range(5)] == [True] * 5
    refused = windows.hit(item, "svc", "p", now=100.5)
    assert not refused.allowed
    assert refused.retry_after_s == 1
    assert windows.hit(item, "svc", "other", now=100.5).allowed  # another caller is unaffected
    assert windows.hit(item, "svc", "p", now=101.05).allowed  # the hit at 100.0 has left the window
    assert not windows.hit(item, "svc", "p", now=101.06).allowed


def test_callers_that_fell_idle_are_forgotten():
    # One key per caller seen: without a sweep the process grows with every visitor.
    windows = MemoryWindows(sweep_s=10.0)
    per_minute, per_second = parse("3/minute"), parse("100/second")
    for n in range(1_000):
        windows.hit(per_second, "svc", f"visitor-{n}", now=1_000.0 + n * 0.001)
    windows.hit(per_minute, "svc", "regular", now=1_001.0)
    assert len(windows) == 1_001
    windows.hit(per_second, "svc", "late", now=1_020.0)
    assert len(windows) == 2  # the regular's minute is not over yet
    windows.hit(per_second, "svc", "late", now=1_100.0)
    assert len(windows) == 1
