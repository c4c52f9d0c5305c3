"""The benchmarks' own rules (bench/_common.py): no p99 from a small sample, n printed
beside it, shortfalls recorded and fatal."""

from __future__ import annotations

import json
import math

import pytest

from bench import _common


@pytest.fixture(autouse=True)
def no_failures_left_over():
    _common._failures.clear()
    yield
    _common._failures.clear()


def test_a_p99_needs_a_hundred_samples():
    small = _common.summary([float(n) for n in range(99)])
    assert small["n"] == 99
    assert math.isnan(small["p99"])
    assert small["max"] == 98.0  # the maximum stays, under its own name
    assert _common.cell(small, "p99") == "n<100: no p99"
    assert _common.spread_cells(small)[0] == "99"
    enough = _common.summary([float(n) for n in range(100)])
    assert enough["p99"] == 98.0
    assert _common.spread_line(enough, ("p50", "p99")) == "49.5 / 98.0 (n=100)"


def test_a_shortfall_or_a_stranger_is_a_failure():
    counts = _common.check_delivered("positions", [1, 2, 3, 4], [1, 2, 2, 5])
    assert counts == {"expected": 4, "delivered": 4, "distinct": 2, "missing": 2, "unexpected": 1, "repeats": 1}
    assert len(_common.failures()) == 2
    _common.check_count("events", expected=10, distinct=10)
    assert len(_common.failures()) == 2


def test_emit_lists_failures_nulls_missing_percentiles_and_exits_non_zero(capsys):
    _common.emit({"p99_ms": float("nan"), "n": 5})
    assert json.loads(capsys.readouterr().out) == {"failures": [], "n": 5, "p99_ms": None}
    _common.fail("3 of 10 never delivered")
    with pytest.raises(SystemExit) as exited:
        _common.emit({"n": 10})
    assert exited.value.code == 1
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["failures"] == ["3 of 10 never delivered"]
