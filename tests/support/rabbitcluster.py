"""A 3-node RabbitMQ cluster of a test session's own, beside the machine's broker.

The machine's broker (rabbit@localhost on 5672) is never touched: each node here has its
own node name (with a random suffix, so parallel runs do not meet), AMQP and
distribution ports, data and log directories under a temporary directory, an Erlang
cookie in its own HOME, no plugins and a config file of its own (the system's would
bind 5672). The three boot at once; nodes 2 and 3 then stop their broker application,
``rabbitmqctl join_cluster`` node 1 (one at a time) and start it again. (A bare VM with
``RABBITMQ_NODE_ONLY`` would save a boot, but since 3.10 the broker's prelaunch starts
Erlang distribution, so such a node cannot be reached by the CLI.)
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import listening

# The Debian wrappers in /usr/sbin switch to the rabbitmq user, whose HOME holds the
# machine broker's cookie: the release's own scripts keep our environment.
_SBIN_GLOB = "/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin"


class ClusterUnavailable(RuntimeError):
    """The cluster could not be started here (no RabbitMQ installed, or it failed)."""


def _sbin() -> Path:
    found = sorted(glob.glob(_SBIN_GLOB))
    if not found:
        raise ClusterUnavailable("RabbitMQ is not installed (no rabbitmq_server release under /usr/lib/rabbitmq)")
    return Path(found[-1])


def _free_port(taken: set[int]) -> int:
    # Below Linux's ephemeral range (32768-60999): a port there can be taken as the source
    # port of some outgoing connection between a node's stop and its restart. And below
    # 17007, where the ports of a `smartgym up` that another test worker starts begin
    # (tests.support.embedded.free_port_offset): both probe a port and bind it later.
    while True:
        port = random.randint(11_000, 16_999)
        if port in taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port


@dataclass
class Node:
    name: str
    amqp_port: int
    dist_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.amqp_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class RabbitCluster:
    def __init__(self, root: Path, size: int = 3) -> None:
        self.root = root
        self.sbin = _sbin()
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20))
        cookie.chmod(0o400)
        (root / "enabled_plugins").write_text("[].\n")
        (root / "rabbitmq-env.conf").write_text("")
        suffix = uuid.uuid4().hex[:6]
        taken: set[int] = set()
        self.nodes = [
            Node(f"sgha{suffix}n{i}@localhost", _free_port(taken), _free_port(taken), root / f"n{i}")
            for i in range(1, size + 1)
        ]

    # -- environment -------------------------------------------------------------------

    def _cli_env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.home),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def _node_env(self, node: Node) -> dict[str, str]:
        node.directory.mkdir(parents=True, exist_ok=True)
        config = node.directory / "rabbitmq.conf"
        config.write_text(
            f"listeners.tcp.default = 127.0.0.1:{node.amqp_port}\n"
            # Quick leader elections and failure detection: the test measures reconnects.
            "net_ticktime = 10\n"
        )
        return {
            **self._cli_env(),
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_MNESIA_BASE": str(node.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.directory / "log"),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(node.directory / "pid"),
            # One scheduler and no busy-waiting: three nodes share two cores with the tests.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                "-kernel inet_dist_use_interface {127,0,0,1} +S 1:1 +sbwt none +sbwtdcpu none +sbwtdio none"
            ),
        }

    # -- control -----------------------------------------------------------------------

    def ctl(self, node: Node, *args: str, timeout: float = 90) -> str:
        result = subprocess.run(
            [str(self.sbin / "rabbitmqctl"), "-n", node.name, *args],
            env=self._cli_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise ClusterUnavailable(f"rabbitmqctl {' '.join(args)} on {node.name}: {result.stderr.strip()[-800:]}")
        return result.stdout

    def _launch(self, node: Node) -> None:
        env = self._node_env(node)
        log = (node.directory / "server.out").open("ab")
        node.process = subprocess.Popen(
            [str(self.sbin / "rabbitmq-server")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed whole, never ours
        )
        log.close()

    def _wait_for_port(self, node: Node, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.process is not None and node.process.poll() is not None:
                raise ClusterUnavailable(f"{node.name} exited: {self._tail(node)}")
            if listening(node.amqp_port):
                return
            time.sleep(0.2)
        raise ClusterUnavailable(
            f"{node.name} did not listen on {node.amqp_port} in {timeout:.0f}s: {self._tail(node)}"
        )

    def _tail(self, node: Node) -> str:
        out = node.directory / "server.out"
        return out.read_text(errors="replace")[-800:] if out.exists() else "(no output)"

    def start(self, timeout: float = 120) -> None:
        first, *others = self.nodes
        for node in self.nodes:
            self._launch(node)
        for node in self.nodes:
            self._wait_for_port(node, timeout)
        with ThreadPoolExecutor(len(others)) as pool:
            list(pool.map(lambda node: self.ctl(node, "stop_app"), others))
            # Joined one after the other: two nodes joining at once can race on the schema.
            for node in others:
                self.ctl(node, "join_cluster", first.name)
            list(pool.map(lambda node: self.ctl(node, "start_app"), others))
        for node in others:
            self._wait_for_port(node, timeout)
        # A quorum queue declared before every node counts as running gets fewer members,
        # and then one node lost can be a majority lost: wait for the three.
        deadline = time.monotonic() + timeout
        while len(self.running_nodes()) < len(self.nodes):
            if time.monotonic() > deadline:
                raise ClusterUnavailable(f"only {self.running_nodes()} running after {timeout:.0f}s")
            time.sleep(0.5)

    def running_nodes(self) -> list[str]:
        listing = self.ctl(next(node for node in self.nodes if node.running), "eval", "rabbit_nodes:all_running().")
        return sorted(name for name in self._names_in(listing))

    def _names_in(self, text: str) -> list[str]:
        return [node.name for node in self.nodes if node.name in text]

    def node_named(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    def leader_of(self, queue: str) -> Node:
        """The node that leads quorum queue ``queue`` now."""
        return self.quorum_of(queue)[0]

    def quorum_of(self, queue: str) -> tuple[Node, list[Node]]:
        """(leader, members) of quorum queue ``queue`` now."""
        alive = next(node for node in self.nodes if node.running)
        listing = self.ctl(alive, "list_queues", "name", "leader", "members", "--quiet", "--no-table-headers")
        for line in listing.splitlines():
            parts = line.split(maxsplit=2)
            if len(parts) == 3 and parts[0] == queue:
                return self.node_named(parts[1]), [node for node in self.nodes if node.name in parts[2]]
        raise ClusterUnavailable(f"queue {queue} not found: {listing[-500:]}")

    def kill(self, node: Node) -> None:
        """The node dies at once (SIGKILL to its VM), as when its machine goes."""
        if node.process is not None and node.process.poll() is None:
            os.killpg(node.process.pid, signal.SIGKILL)
            node.process.wait(timeout=30)

    def stop(self, node: Node) -> None:
        if not node.running:
            return
        with contextlib.suppress(ClusterUnavailable, subprocess.TimeoutExpired):
            self.ctl(node, "stop", timeout=60)
        if node.process is not None:
            try:
                node.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill(node)

    def restart(self, node: Node, timeout: float = 120) -> None:
        """Bring a killed node back: it rejoins the cluster it remembers from its data dir."""
        if node.running:
            return
        self._launch(node)
        self._wait_for_port(node, timeout)

    def ensure_all_running(self) -> None:
        for node in self.nodes:
            self.restart(node)

    def close(self) -> None:
        for node in self.nodes:
            if node.running and node.process is not None:
                os.killpg(node.process.pid, signal.SIGTERM)
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.kill(node)
        shutil.rmtree(self.root, ignore_errors=True)
