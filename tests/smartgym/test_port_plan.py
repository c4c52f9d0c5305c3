"""``up --port-offset N --host H``: every listener of the port plan moves and binds H, and
every route of the gateway's table reaches its own service there. The site's gates are
configured as JSON: one real controller reached by a pyserial URL (socket://), one
virtual relay board."""

from __future__ import annotations

import json
import socket
import socketserver
import threading

import httpx

from common.security import Role
from gateway.settings import GatewaySettings
from smartgym.registry import ports
from tests.support.embedded import PASSWORD, free_port_offset, make_operator, seed_pack
from tests.support.processes import clean_env, start, stop, wait_for_log, wait_healthy

HOST = "127.0.0.2"  # a loopback address of its own: a listener left on 127.0.0.1 shows


def _accepts(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, port)) == 0


class _Controller(socketserver.StreamRequestHandler):
    """A gate controller on a terminal server: the line protocol over TCP."""

    commands: list[str] = []

    def handle(self) -> None:
        for raw in self.rfile:
            self.commands.append(raw.decode().strip())
            self.wfile.write(b"OK\n")


def test_every_listener_moves_with_the_offset_and_binds_the_host(tmp_path):
    offset = free_port_offset()
    plan = ports(offset)
    gateway = f"http://{HOST}:{plan['gateway']}"
    seed_pack(tmp_path)
    controller = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Controller)
    threading.Thread(target=controller.serve_forever, daemon=True).start()
    gates = [
        {
            "gate_id": "side-door",
            "branch_id": "main",
            "driver": "line",
            "port": f"socket://127.0.0.1:{controller.server_address[1]}",
        },
        {"gate_id": "lobby", "branch_id": "main", "driver": "ch340", "port": "virtual:lobby", "channel": 2},
    ]
    log = tmp_path / "up.log"
    args = ["up", "--host", HOST, "--port-offset", str(offset), "--log-format", "json"]
    process = start(args, env=clean_env(SMARTGYM_ACCESS_GATES=json.dumps(gates)), cwd=tmp_path, log=log)
    try:
        wait_healthy(gateway, process, log, timeout=90)
        for name, port in plan.items():
            assert _accepts(HOST, port), f"{name} not listening on {HOST}:{port}"
            assert not _accepts("127.0.0.1", port), f"{name} listens on 127.0.0.1:{port}, not only on {HOST}"

        with httpx.Client(base_url=gateway, timeout=10) as client:
            assert client.post("/api/auth/signup", json={"email": "route@example.com", "password": PASSWORD}).is_success
            login = client.post("/api/auth/login", json={"email": "route@example.com", "password": PASSWORD})
            auth = {"authorization": f"Bearer {login.json()['access_token']}"}
            routes = GatewaySettings().gateway_routes
            assert {route.service for route in routes} >= {"auth", "access", "running", "running_live"}
            for route in routes:
                answer = client.get(f"{route.prefix}/healthz", headers=auth)
                if route.roles and Role.CUSTOMER not in route.roles:
                    # Staff and helpers only (helper's API): the gateway refuses a member.
                    assert answer.status_code == 403, (route.prefix, answer.status_code, answer.text)
                    continue
                if route.service == "running_live":
                    # The live socket server answers plain HTTP with its own refusal.
                    assert answer.status_code in (400, 426), (route.prefix, answer.status_code, answer.text)
                    assert "websocket" in answer.text.lower(), answer.text
                else:
                    assert answer.status_code == 200, (route.prefix, answer.status_code, answer.text)
                    assert answer.json()["service"] == route.service, route.prefix

            operator = make_operator(gateway, tmp_path / "var")
            lines = {
                gate["gate_id"]: gate["line"] for gate in client.get("/api/access/v1/gates", headers=operator).json()
            }
            assert lines == {"side-door": "up", "lobby": "up"}
            for gate in ("side-door", "lobby"):
                opened = client.post(f"/api/access/v1/gates/{gate}/open", json={"reason": "test"}, headers=operator)
                assert opened.json()["granted"] is True, opened.text
        assert _Controller.commands == ["OPEN 1 3000"]
        # The virtual device logs the frame once it has read it off its line, which may
        # be just after the grant was answered.
        wait_for_log(log, "virtual gate lobby #2: OPEN (relay frame), relay ON", timeout=10)
    finally:
        controller.shutdown()
        code = stop(process)
    assert code == 0, log.read_text()[-3000:]
    # --log-format json: every log line is one JSON object (the launcher's progress lines
    # for a person are not log lines).
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    assert len(lines) > 10
    assert all(json.loads(line)["level"] for line in lines)
