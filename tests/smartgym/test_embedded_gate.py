"""``smartgym up`` as a newcomer meets it on a terminal, with no broker and no database
server: readable, coloured log lines; the member journey through the gateway; facemodel
and access in the one process (the face model pack built on first start, reused after);
and a virtual gate that visibly opens when an operator opens it through the gateway."""

from __future__ import annotations

import sqlite3

import httpx

from tests.support.embedded import OnTerminal, free_port_offset, make_operator, seed_wheel_cache
from tests.support.journeys import signup_login_and_get_welcomed
from tests.support.processes import clean_env, start, stop, wait_for_log, wait_healthy


def test_up_serves_faces_over_the_socket_and_opens_a_virtual_gate(tmp_path):
    offset = free_port_offset()
    gateway = f"http://127.0.0.1:{8000 + offset}"
    seed_wheel_cache(tmp_path)
    log = tmp_path / "up.log"
    env = clean_env()
    terminal = OnTerminal(["up", "--port-offset", str(offset)], env=env, cwd=tmp_path, log=log)
    process = terminal.process
    try:
        wait_healthy(gateway, process, log, timeout=90)
        text = log.read_text()
        assert "Building the face model pack" in text
        # A terminal gets readable lines, coloured, not JSON.
        assert "\033[32mINFO" in text
        assert not any(line.lstrip().startswith("{") for line in text.splitlines())
        signup_login_and_get_welcomed(gateway)
        assert (tmp_path / "var" / "models" / "yunet-sface-1.0.0" / "manifest.json").exists()
        # facemodel answers on its Unix socket, as access reaches it in a pod.
        socket_path = tmp_path / "var" / "run" / "facemodel.sock"
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket_path)), base_url="http://facemodel") as uds:
            models = uds.get("/v1/models")
        assert models.status_code == 200, models.text
        assert models.json()["embedding_space"] == "sface-2021dec"
        assert httpx.get(f"http://127.0.0.1:{8002 + offset}/readyz").status_code == 200

        operator = make_operator(gateway, tmp_path / "var")
        gates = httpx.get(f"{gateway}/api/access/v1/gates", headers=operator, timeout=10)
        assert gates.status_code == 200, gates.text
        [gate] = gates.json()
        assert (gate["gate_id"], gate["branch_id"], gate["line"]) == ("front-door", "main", "up")
        opened = httpx.post(
            f"{gateway}/api/access/v1/gates/front-door/open",
            json={"reason": "member stuck at the door"},
            headers=operator,
            timeout=10,
        )
        assert opened.status_code == 200, opened.text
        assert opened.json()["granted"] is True
        assert "OPEN for 3000 ms, relay ON" in wait_for_log(log, "virtual gate front-door #1: OPEN", timeout=10)
        wait_for_log(log, "virtual gate front-door #1: CLOSE (open time over), relay OFF", timeout=6)
    finally:
        code = stop(process)
        terminal.close()
    assert code == 0, log.read_text()[-3000:]
    with sqlite3.connect(tmp_path / "var" / "auth.db") as db:
        assert db.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone() == (0,)

    # A second start reuses the pack: no build, no download.
    log2 = tmp_path / "up2.log"
    process = start(["up", "--port-offset", str(offset)], env=env, cwd=tmp_path, log=log2)
    try:
        wait_healthy(gateway, process, log2, timeout=60)
        assert "Building the face model pack" not in log2.read_text()
    finally:
        code = stop(process)
    assert code == 0, log2.read_text()[-3000:]
