"""Starting SmartGym processes the way an operator does, and waiting for them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any SMARTGYM_* setting, plus ``extra``. The event loop
    choice is kept: the suite or a benchmark can be run with the children on either loop."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SMARTGYM_") or key == "SMARTGYM_EVENT_LOOP"
    }
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start(args: list[str], *, env: Mapping[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "smartgym", *args], env=dict(env), cwd=cwd, stdout=handle, stderr=subprocess.STDOUT
    )


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not healthy within {timeout}s:\n{log.read_text()[-3000:]}")


def listening(port: int, *, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port`` now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    """Until ``process`` accepts connections on a loopback port (a listener without a
    health route); its log's tail if it exits or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if listening(port):
            return
        time.sleep(0.2)
    raise AssertionError(f"port {port} not open within {timeout}s:\n{log.read_text()[-3000:]}")


def wait_for_log(
    log: Path,
    text: str,
    *,
    process: subprocess.Popen[bytes] | None = None,
    after: int = 0,
    timeout: float = 30,
) -> str:
    """The first line at or after byte ``after`` of ``log`` holding ``text``, waited for;
    given early if ``process`` exits. A line a process logs after answering (a device
    reading its line, a background task) is waited for, never read at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_bytes()[after:].decode(errors="replace").splitlines():
            if text in line:
                return line
        if process is not None and process.poll() is not None:
            break
        time.sleep(0.05)
    seen = log.read_text(errors="replace")
    shown = seen if len(seen) <= 4000 else f"{seen[:2500]}\n…\n{seen[-1500:]}"
    raise AssertionError(f"{text!r} not seen in {log.name}:\n{shown}")


def stop(process: subprocess.Popen[bytes], timeout: float = 20) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    return process.returncode
