"""The test harness's own rules: under a test worker (``pytest -n``), a test must not
take down the broker or database the other worker is using, and two workers' `smartgym up`s
never draw the same ports (docs/adr/0061)."""

from __future__ import annotations

import itertools
import subprocess

import pytest

from smartgym.registry import PORTS
from tests.support import embedded, infra


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every command the harness would run, recorded instead of run (nothing here may
    really stop the machine's services)."""
    ran: list[list[str]] = []

    def record(command: list[str], **_: object) -> subprocess.CompletedProcess[bytes]:
        ran.append(command)
        return subprocess.CompletedProcess(command, 0, b"", b"")

    monkeypatch.setattr(subprocess, "run", record)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    return ran


@pytest.mark.parametrize("stop", [lambda: infra.rabbitmqctl("stop_app"), infra.restart_broker_app, infra.stop_postgres])
def test_a_worker_may_not_stop_a_shared_service(commands: list[list[str]], stop) -> None:
    with pytest.raises(RuntimeError, match="mark the test exclusive"):
        stop()
    assert commands == []


def test_a_worker_may_still_ask_the_broker_how_it_is(commands: list[list[str]]) -> None:
    infra.rabbitmqctl("await_startup")
    assert commands == [["rabbitmqctl", "await_startup"]]


@pytest.mark.parametrize("workers", [2, 3])
def test_each_worker_draws_ports_of_its_own(monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(workers))
    port_ranges = []
    for worker in range(workers):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{worker}")
        lowest, highest = embedded._offset_band(32_768)
        assert lowest <= highest
        port_ranges.append((lowest + min(PORTS.values()), highest + max(PORTS.values())))
    port_ranges.sort()
    for (_, end), (start, _) in itertools.pairwise(port_ranges):
        assert end < start, port_ranges
    assert port_ranges[-1][1] < 32_768  # below the ephemeral ports


def test_without_workers_the_whole_band_is_drawn_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert embedded._offset_band(32_768) == (10_000, 32_768 - max(PORTS.values()) - 1)
