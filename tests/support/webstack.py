"""``smartgym up`` plus ``smartgym demo`` in a fresh directory, for the browser tests and the
screens benchmark: a branch with gates, an owner, an operator, two members, a kiosk and 20
simulated treadmills whose modes a control API switches."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from smartgym.demo import PASSWORD
from tests.support import testdata
from tests.support.apps import free_port
from tests.support.embedded import free_port_offset, seed_pack
from tests.support.processes import clean_env, start, stop, wait_for_log, wait_healthy


@dataclass(frozen=True)
class Stack:
    gateway: str
    data_dir: Path
    up_log: Path
    control: str  # the equipment simulator's control API
    kiosk: dict[str, str]  # client_id, client_secret
    photos: Path
    port_offset: int

    def login(self, email: str) -> dict[str, str]:
        for _ in range(3):
            response = httpx.post(
                f"{self.gateway}/api/auth/login", json={"email": email, "password": PASSWORD}, timeout=10
            )
            # A POST is never retried by the gateway: on a loaded machine a pooled
            # connection the upstream just closed answers 502 now and then.
            if response.status_code != 502:
                break
            time.sleep(0.5)
        assert response.status_code == 200, response.text
        return {"authorization": f"Bearer {response.json()['access_token']}"}

    def wait_for_log(self, text: str, *, after: int = 0, timeout: float = 10) -> str:
        """The first line at or after byte ``after`` of the platform's log holding ``text``."""
        return wait_for_log(self.up_log, text, after=after, timeout=timeout)

    def log_size(self) -> int:
        return self.up_log.stat().st_size


def _start_up(workdir: Path, env: dict[str, str], log: Path) -> tuple[int, subprocess.Popen[bytes]]:
    """``smartgym up`` on a free port offset, healthy. A port found free can be taken before
    `up` binds it (the plan's ports overlap the ephemeral range other processes' outgoing
    connections draw from): then it starts again on another offset."""
    for attempt in range(3):
        offset = free_port_offset()
        process = start(["up", "--port-offset", str(offset)], env=env, cwd=workdir, log=log)
        try:
            wait_healthy(f"http://127.0.0.1:{8000 + offset}", process, log, timeout=300)
        except AssertionError:
            stop(process)
            if attempt < 2 and "address already in use" in log.read_text(errors="replace"):
                continue
            raise
        return offset, process
    raise AssertionError("unreachable")


@contextmanager
def web_stack(workdir: Path) -> Iterator[Stack]:
    seed_pack(workdir)  # the pack build is tested elsewhere
    testdata.photos()
    (workdir / "var" / "cache").mkdir(parents=True, exist_ok=True)
    shutil.copy(testdata.CACHE / "face_recognition-1.3.0.tar.gz", workdir / "var" / "cache")
    control = free_port()
    # Pings every second: a dead treadmill is a fault within a couple of seconds, not ten.
    env = clean_env(SMARTGYM_MONITORING_PING_INTERVAL_S="1")
    up_log, demo_log = workdir / "up.log", workdir / "demo.log"
    offset, up = _start_up(workdir, env, up_log)
    gateway = f"http://127.0.0.1:{8000 + offset}"
    demo = None
    try:
        demo = start(
            ["demo", "--port-offset", str(offset), "--control-port", str(control)], env=env, cwd=workdir, log=demo_log
        )
        wait_for_log(demo_log, "The demo gym is ready", process=demo, timeout=180)
        wait_for_log(demo_log, "equipment: 20 devices", process=demo, timeout=30)
        kiosk = json.loads((workdir / "var" / "demo" / "kiosk.json").read_text())
        photos = workdir / "var" / "demo" / "photos"
        yield Stack(gateway, workdir / "var", up_log, f"http://127.0.0.1:{control}", kiosk, photos, offset)
    finally:
        if demo is not None and demo.poll() is None:
            demo.send_signal(2)  # Ctrl-C, as a person stops it
            try:
                demo.wait(timeout=20)
            except subprocess.TimeoutExpired:
                demo.kill()
        stop(up)
