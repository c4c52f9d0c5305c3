"""`smartgym simulate equipment` as an operator runs it: devices on their own loopback
addresses, switched by a script or by its control API."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support.apps import free_port
from tests.support.processes import clean_env, start, stop

ROOT = Path(__file__).resolve().parents[2]


def test_the_simulator_serves_echoes_and_switches_devices(tmp_path):
    echo, control = free_port(), free_port()
    log = tmp_path / "simulator.log"
    process = start(
        ["simulate", "equipment", "--devices", "3", "--port", str(echo), "--control-port", str(control),
         "--fail", "dead:sim-00002@1"],
        env=clean_env(), cwd=ROOT, log=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                listing = httpx.get(f"http://127.0.0.1:{control}/devices", timeout=1)
                break
            except httpx.HTTPError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        assert listing.json()["devices"] == 3
        assert httpx.get(f"http://127.1.0.1:{echo}/echo").text == "ok"
        assert httpx.get(f"http://127.1.0.2:{echo}/echo").status_code == 200
        switched = httpx.post(f"http://127.0.0.1:{control}/devices/sim-00000/mode", json={"mode": "flap"})
        assert switched.json()["mode"] == "flap"
        statuses = {httpx.get(f"http://127.1.0.1:{echo}/echo").status_code for _ in range(4)}
        assert statuses == {200, 503}
        bad = httpx.post(f"http://127.0.0.1:{control}/devices/sim-00000/mode", json={"mode": "explode"})
        assert bad.status_code == 422
        assert httpx.post(f"http://127.0.0.1:{control}/devices/nope/mode", json={"mode": "ok"}).status_code == 404
        time.sleep(1.5)  # the scripted failure: sim-00002 dies after a second
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.1.0.3:{echo}/echo", timeout=1)
    finally:
        assert stop(process) in (0, -15)
    assert "sim-00002 -> dead" in log.read_text()


def test_a_malformed_failure_script_is_refused(tmp_path):
    log = tmp_path / "simulator.log"
    process = start(["simulate", "equipment", "--fail", "melt:sim-1"], env=clean_env(), cwd=ROOT, log=log)
    assert process.wait(timeout=30) == 2
    assert "MODE:DEVICE@SECONDS" in log.read_text()
