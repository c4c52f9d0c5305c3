"""The test harness's own rules: under a test worker (``pytest -n``), a test must not
take down the broker or database the other worker is using (docs/adr/0061)."""

from __future__ import annotations

import subprocess

import pytest

from tests.support import infra


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
