"""The first five minutes, scripted: ``smartgym up`` in one process, ``smartgym demo`` in
another, then a newcomer's walk through the gateway only: enrol a face from a photo file,
walk in with it (the virtual gate opens), walk in with a QR pass, kill a treadmill and see
the fault in the owner's inbox, and a live run watched by a friend."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import httpx

from smartgym.demo import BRANCH, ENTRY_GATE, KILL, MEMBERS, OWNER, PASSWORD
from tests.support import testdata
from tests.support.apps import free_port
from tests.support.embedded import free_port_offset, seed_pack
from tests.support.processes import clean_env, start, stop, wait_for_log, wait_healthy


def _login(client: httpx.Client, email: str) -> dict[str, str]:
    response = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"authorization": f"Bearer {response.json()['access_token']}"}


def _stop_demo(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGINT)  # Ctrl-C, as a person stops it
    return process.wait(timeout=20)


def test_up_demo_and_the_walk_through_the_gateway(tmp_path):
    offset = free_port_offset()
    gateway = f"http://127.0.0.1:{8000 + offset}"
    seed_pack(tmp_path)  # the pack build on a first start is tested elsewhere
    testdata.photos()  # the face_recognition sdist is in the test cache now
    (tmp_path / "var" / "cache").mkdir(parents=True, exist_ok=True)
    shutil.copy(testdata.CACHE / "face_recognition-1.3.0.tar.gz", tmp_path / "var" / "cache")
    env = clean_env()
    control = free_port()  # the simulated equipment's control API
    demo_args = ["demo", "--port-offset", str(offset), "--control-port", str(control)]
    up_log, demo_log = tmp_path / "up.log", tmp_path / "demo.log"
    up = start(["up", "--port-offset", str(offset)], env=env, cwd=tmp_path, log=up_log)
    demo = None
    try:
        wait_healthy(gateway, up, up_log, timeout=120)
        demo = start(demo_args, env=env, cwd=tmp_path, log=demo_log)
        wait_for_log(demo_log, "The demo gym is ready", process=demo, timeout=60)
        wait_for_log(demo_log, "equipment: 20 devices", process=demo)
        wait_for_log(up_log, f"gate {ENTRY_GATE} of branch {BRANCH} added from the site file")
        printed = demo_log.read_text()
        kiosk = json.loads((tmp_path / "var" / "demo" / "kiosk.json").read_text())
        assert kiosk["client_secret"] in printed  # shown to the person trying it
        photo = (tmp_path / "var" / "demo" / "photos" / "member1.jpg").read_bytes()

        with httpx.Client(base_url=gateway, timeout=30) as client:
            # 1. A member enrols a face from a photo file.
            member1 = _login(client, MEMBERS[0])
            consent = client.post(
                "/api/auth/me/face/consent", json={"text_version": "2026-11", "accepted": True}, headers=member1
            )
            assert consent.status_code == 201, consent.text
            enrolled = client.post(
                "/api/auth/me/face", content=photo, headers={**member1, "content-type": "image/jpeg"}
            )
            assert enrolled.status_code == 201, enrolled.text

            # 2. The kiosk at the entry gate sends the same photo; the virtual gate opens.
            token = client.post("/api/auth/devices/token", json=kiosk)
            assert token.status_code == 200, token.text
            kiosk_headers = {"authorization": f"Bearer {token.json()['access_token']}"}
            deadline = time.monotonic() + 20
            while True:  # access learns the new vector through an event
                decision = client.post(
                    f"/api/access/v1/gates/{ENTRY_GATE}/face",
                    content=photo,
                    headers={**kiosk_headers, "content-type": "image/jpeg"},
                ).json()
                if decision.get("granted") or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert decision["granted"] is True, decision
            assert decision["gate_result"] == "opened"
            wait_for_log(up_log, f"virtual gate {BRANCH} #1: OPEN for 3000 ms, relay ON")

            # 3. The other member walks in with a QR pass.
            member2 = _login(client, MEMBERS[1])
            code = client.post("/api/auth/me/entry-pass", json={"branch_id": BRANCH}, headers=member2).json()["code"]
            passed = client.post(f"/api/access/v1/gates/{ENTRY_GATE}/pass", json={"code": code}, headers=kiosk_headers)
            assert passed.status_code == 200, passed.text
            assert (passed.json()["granted"], passed.json()["gate_result"]) == (True, "opened")

            # 4. A treadmill dies; the owner's inbox gets the fault.
            killed = httpx.post(f"http://127.0.0.1:{control}/devices/{KILL}/mode", json={"mode": "dead"})
            assert killed.status_code == 200, killed.text
            owner = _login(client, OWNER)
            deadline = time.monotonic() + 30
            faults: list[dict[str, object]] = []
            while not faults and time.monotonic() < deadline:
                inbox = client.get("/api/notifications/inbox", headers=owner).json()["messages"]
                faults = [item for item in inbox if item["kind"] == "equipment_fault" and KILL in item["title"]]
                time.sleep(0.5)
            assert faults, inbox

        # 5. A live run over the gateway's WebSockets, watched by a friend.
        run = subprocess.run(
            [sys.executable, "-m", "smartgym", "demo-run", "--gateway", gateway, "--seconds", "3"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "member 2 is watching run" in run.stdout
        assert run.stdout.count("member 2 sees member 1 at") == 3
        assert "run finished" in run.stdout

        # Running the demo again changes nothing and says the same.
        assert _stop_demo(demo) == 0, demo_log.read_text()[-2000:]
        again_log = tmp_path / "demo-again.log"
        demo = start(demo_args, env=env, cwd=tmp_path, log=again_log)
        wait_for_log(again_log, "The demo gym is ready", process=demo, timeout=60)
        assert kiosk["client_secret"] in again_log.read_text()
    finally:
        if demo is not None and demo.poll() is None:
            _stop_demo(demo)
        code = stop(up)
    assert code == 0, up_log.read_text()[-3000:]
