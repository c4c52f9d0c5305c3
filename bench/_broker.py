"""A private RabbitMQ node for benchmarks that must count the broker's CPU (not a
benchmark itself). The shared node on 5672 also carries every other client on the
machine, so its CPU cannot be attributed to one run; this node, on its own ports and in
its own directory, carries only the benchmark's traffic and is stopped afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from bench._common import cpu_seconds, processes_named
from tests.support.apps import free_port
from tests.support.processes import listening


class PrivateBroker:
    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="bench-rabbit-"))
        self.node = f"bench{uuid.uuid4().hex[:8]}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self, timeout: float = 120) -> PrivateBroker:
        base = self.directory
        (base / "mnesia").mkdir()
        (base / "log").mkdir()
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq.conf").write_text("")
        if os.geteuid() == 0:  # the server script drops to the rabbitmq user
            for path in [base, *base.rglob("*")]:
                shutil.chown(path, "rabbitmq", "rabbitmq")
        env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_BASE": str(base),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_MNESIA_DIR": str(base / "mnesia" / "node"),
            "RABBITMQ_QUORUM_DIR": str(base / "mnesia" / "quorum"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(base / "feature_flags"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(base / "pid"),
        }
        self._process = subprocess.Popen(
            ["rabbitmq-server"], env=env, stdout=(base / "out").open("wb"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"private RabbitMQ node exited:\n{(base / 'out').read_text()[-2000:]}")
            pid_file = base / "pid"
            if pid_file.exists() and pid_file.read_text().strip() and listening(self.port):
                self.pid = int(pid_file.read_text().strip())
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError("private RabbitMQ node did not start in time")

    def cpu_seconds(self) -> float:
        assert self.pid is not None
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        subprocess.run(["rabbitmqctl", "-n", self.node, "stop"], capture_output=True, timeout=60, check=False)
        if self._process is not None:
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def shared_broker_pid(exclude: set[int] | None = None) -> int | None:
    """The shared node's Erlang VM: a beam.smp that boots rabbit (CLI tools are beam.smp
    too, but do not), other than ``exclude``."""
    for pid in processes_named("beam.smp"):
        if exclude and pid in exclude:
            continue
        try:
            if b"rabbit boot" in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" "):
                return pid
        except OSError:
            continue
    return None
