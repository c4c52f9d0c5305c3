"""An Elasticsearch-8 REST emulator (PyPI ``noida-db``) as a local process, for the
search service's wire-level tests: no Elasticsearch server can run on these machines."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.apps import free_port


def emulator_binary() -> str | None:
    """The emulator's own binary (the ``noida-db`` console script only launches it, and
    stopping the script would leave the binary running)."""
    try:
        import noida_db  # type: ignore[import-untyped]
    except ImportError:
        return shutil.which("noida-db")
    binary = Path(noida_db.__file__).parent / "noida-db"
    return str(binary) if binary.exists() else shutil.which("noida-db")


@contextmanager
def elasticsearch_emulator(data_dir: Path) -> Iterator[str]:
    binary = emulator_binary()
    if binary is None:
        raise RuntimeError("noida-db is not installed (scripts/install dev)")
    port = free_port()
    log = data_dir / "noida.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [
                binary,
                "start",
                "--only",
                "elasticsearch",
                "--elasticsearch-port",
                str(port),
                "--data-dir",
                str(data_dir / "data"),
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped whole below
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"noida-db exited with {process.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"noida-db did not answer within 20 s: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
