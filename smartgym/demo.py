"""``smartgym demo``: a small gym on a running installation, to try every part in minutes.

It creates (again harmlessly: every step is idempotent) a branch with an entry and an exit
gate on a virtual line, an operator, the branch's owner, two members with memberships who
are running friends, a kiosk, sample face photos, and 20 simulated pieces of equipment
watched by monitoring; then it prints what to try next and keeps the equipment running
until Ctrl-C. Accounts, branch, gates and the kiosk are made the way the administrator's
commands make them (smartgym.admin); memberships, friendships and the owner's phone go through the
gateway, as the consoles and apps do.

The sample faces are test photos of the ``face_recognition`` sdist on PyPI, fetched with
pip into the data directory's cache (nothing else is downloaded).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import httpx

from common.settings import PlatformSettings
from smartgym import admin
from smartgym.registry import ports

BRANCH = "demo-gym"
ENTRY_GATE, EXIT_GATE = "demo-entry", "demo-exit"
KIOSK = "demo-kiosk"
PASSWORD = "smartgym demo password"  # noqa: S105 - demo accounts, refused in production
OPERATOR, OWNER = "operator@demo.smartgym.example", "owner@demo.smartgym.example"
MEMBERS = ("member1@demo.smartgym.example", "member2@demo.smartgym.example")
OWNER_PHONE = "demo-owner-phone-token-0001"
EQUIPMENT, EQUIPMENT_PREFIX, KILL = 20, "demo-treadmill", "demo-treadmill-00003"
FACE_SDIST = "face_recognition==1.3.0"
# Sample photos: member 1 and member 2 (the same people as in the tests).
PHOTOS = {"member1.jpg": "obama.jpg", "member2.jpg": "biden.jpg"}


class DemoRefused(click.ClickException):
    pass


@dataclass(frozen=True)
class Where:
    gateway: str
    monitoring: str
    heartbeat: tuple[str, int]
    data_dir: Path
    control_port: int
    equipment_port: int


def _admin(outcome: admin.Outcome | Coroutine[Any, Any, admin.Outcome]) -> dict[str, Any]:
    """The record of one administrator's step (smartgym.admin), run here as it would be
    from the command line."""
    if not isinstance(outcome, admin.Outcome):
        outcome = asyncio.run(outcome)
    return outcome.record


def _step(message: str) -> None:
    click.echo(f"  {message}", err=True)


def fetch_photos(data_dir: Path) -> Path:
    """The sample faces in ``<data dir>/demo/photos``, from the face_recognition sdist
    (fetched with pip into ``<data dir>/cache`` once)."""
    target = data_dir / "demo" / "photos"
    if all((target / name).exists() for name in PHOTOS):
        return target
    cache = data_dir / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    sdists = sorted(cache.glob("face_recognition-1.3.0.tar.gz"))
    if not sdists:
        _step(f"fetching sample faces: pip download {FACE_SDIST} (test photos, ~3 MB) into {cache}…")
        subprocess.run(  # noqa: S603 - pip from this interpreter, fixed arguments
            [
                sys.executable,
                *("-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check"),
                *("--no-binary", ":all:", "-d", str(cache), FACE_SDIST),
            ],
            check=True,
            timeout=300,
        )
        sdists = sorted(cache.glob("face_recognition-1.3.0.tar.gz"))
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdists[0]) as archive:
        for name, source in PHOTOS.items():
            member = archive.extractfile(f"face_recognition-1.3.0/tests/test_images/{source}")
            if member is None:
                raise DemoRefused(f"{source} missing from the face_recognition sdist")
            (target / name).write_bytes(member.read())
    return target


class Gateway:
    def __init__(self, url: str) -> None:
        self._client = httpx.Client(base_url=url, timeout=30)

    def login(self, email: str) -> dict[str, str]:
        response = self._client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        _expect(response, 200, f"log in as {email}")
        return {"authorization": f"Bearer {response.json()['access_token']}"}

    def call(self, method: str, path: str, expected: tuple[int, ...], what: str, **kwargs: Any) -> httpx.Response:
        response = self._client.request(method, path, **kwargs)
        _expect(response, expected, what)
        return response

    def close(self) -> None:
        self._client.close()


def _expect(response: httpx.Response, expected: int | tuple[int, ...], what: str) -> None:
    codes = (expected,) if isinstance(expected, int) else expected
    if response.status_code not in codes:
        raise DemoRefused(f"could not {what}: {response.status_code} {response.text[:300]}")


def kiosk_credentials(data_dir: Path) -> dict[str, str]:
    """The kiosk's client id and secret, kept (owner-only) in the data directory so a
    second run can print them again; a kiosk whose secret was lost gets a new one."""
    stored = data_dir / "demo" / "kiosk.json"
    record = _admin(admin.add_device(KIOSK, branch_id=BRANCH, kind="kiosk"))
    if record["created"] or not stored.exists():
        if not record["created"]:
            record = _admin(admin.add_device(KIOSK, branch_id=BRANCH, kind="kiosk", rotate=True))
        stored.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(stored, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump({"client_id": record["client_id"], "client_secret": record["client_secret"]}, handle)
    credentials: dict[str, str] = json.loads(stored.read_text())
    return credentials


def set_up(where: Where) -> dict[str, Any]:
    """Everything but the equipment; returns what the printed walk-through needs."""
    gateway = Gateway(where.gateway)
    try:
        gateway.call("GET", "/healthz", (200,), "reach the gateway (is `smartgym up` running?)")
    except httpx.HTTPError as exc:
        raise DemoRefused(f"no installation answers at {where.gateway}: start `smartgym up` first") from exc
    try:
        click.echo(f"Setting up the demo gym {BRANCH} on {where.gateway}", err=True)
        _admin(admin.create_branch(BRANCH))
        for gate, direction in ((ENTRY_GATE, "in"), (EXIT_GATE, "out")):
            _admin(admin.add_gate(gate, branch_id=BRANCH, direction=direction))
        _step(f"branch {BRANCH}: gates {ENTRY_GATE} (entry) and {EXIT_GATE} (exit) on virtual:{BRANCH}")
        _admin(admin.create_user(email=OPERATOR, role="operator", branches=(), password=PASSWORD))
        owner = _admin(admin.create_user(email=OWNER, role="branch_owner", branches=(BRANCH,), password=PASSWORD))
        members = [
            _admin(admin.create_user(email=email, role="customer", branches=(), password=PASSWORD)) for email in MEMBERS
        ]
        _step(f"accounts: operator {OPERATOR}, owner {OWNER}, members {', '.join(MEMBERS)}")
        kiosk = kiosk_credentials(where.data_dir)
        _step(f"kiosk {KIOSK}: client id {kiosk['client_id']}")

        operator = gateway.login(OPERATOR)
        now = datetime.now(UTC).replace(microsecond=0)
        for member in members:
            gateway.call(
                "PUT",
                f"/api/auth/members/{member['id']}/memberships",
                (200,),
                "give a membership",
                json={
                    "branch_id": BRANCH,
                    "status": "active",
                    "valid_from": (now - timedelta(days=1)).isoformat(),
                    "valid_until": (now + timedelta(days=365)).isoformat(),
                },
                headers=operator,
            )
        _step(f"memberships: both members may enter {BRANCH} for a year")
        first, second = (gateway.login(email) for email in MEMBERS)
        gateway.call("POST", f"/api/running/v1/friends/{members[1]['id']}", (200, 409), "befriend", headers=first)
        gateway.call("POST", f"/api/running/v1/friends/{members[0]['id']}/accept", (204, 409), "accept", headers=second)
        _step("the two members are running friends")
        # The owner's phone: notification learns the owner's branch from the token and
        # pushes fault alerts to this device token (the local FCM stand-in receives them).
        owner_headers = gateway.login(OWNER)
        gateway.call(
            "PUT",
            "/api/notifications/me/push-tokens",
            (204,),
            "register the owner's phone",
            json={"token": OWNER_PHONE, "platform": "android"},
            headers=owner_headers,
        )
        _step(f"owner {OWNER}'s phone registered for pushes")
        photos = fetch_photos(where.data_dir)
        _step(f"sample faces in {photos}")
        return {"operator": operator, "kiosk": kiosk, "photos": photos, "owner": owner, "members": members}
    finally:
        gateway.close()


def next_steps(where: Where, ready: dict[str, Any]) -> str:
    g, kiosk, photos = where.gateway, ready["kiosk"], ready["photos"]
    login = (
        f"curl -s -XPOST {g}/api/auth/login -H 'content-type: application/json' "
        '-d \'{"email":"%s","password":"' + PASSWORD + "\"}' | python3 -c 'import json,sys;"
        'print(json.load(sys.stdin)["access_token"])\''
    )
    return f"""
The demo gym is ready. Every account's password is "{PASSWORD}".

1. Enrol member 1's face from a photo file:
   M1=$({login % MEMBERS[0]})
   curl -s -XPOST {g}/api/auth/me/face/consent -H "authorization: Bearer $M1" \\
        -H 'content-type: application/json' -d '{{"text_version":"2026-11","accepted":true}}'
   curl -s -XPOST {g}/api/auth/me/face -H "authorization: Bearer $M1" \\
        -H 'content-type: image/jpeg' --data-binary @{photos}/member1.jpg

2. Walk in: the kiosk at {ENTRY_GATE} sends the same photo as its camera frame:
   KIOSK=$(curl -s -XPOST {g}/api/auth/devices/token -H 'content-type: application/json' \\
        -d '{{"client_id":"{kiosk["client_id"]}","client_secret":"{kiosk["client_secret"]}"}}' \\
        | python3 -c 'import json,sys;print(json.load(sys.stdin)["access_token"])')
   curl -s -XPOST {g}/api/access/v1/gates/{ENTRY_GATE}/face -H "authorization: Bearer $KIOSK" \\
        -H 'content-type: image/jpeg' --data-binary @{photos}/member1.jpg
   -> "granted": true, "gate_result": "opened"; the `smartgym up` console shows
      "virtual gate {BRANCH} #1: OPEN for 3000 ms, relay ON".

3. Member 2 walks in with a QR pass:
   M2=$({login % MEMBERS[1]})
   CODE=$(curl -s -XPOST {g}/api/auth/me/entry-pass -H "authorization: Bearer $M2" \\
        -H 'content-type: application/json' -d '{{"branch_id":"{BRANCH}"}}' \\
        | python3 -c 'import json,sys;print(json.load(sys.stdin)["code"])')
   curl -s -XPOST {g}/api/access/v1/gates/{ENTRY_GATE}/pass -H "authorization: Bearer $KIOSK" \\
        -H 'content-type: application/json' -d "{{\\"code\\":\\"$CODE\\"}}"

4. Kill a treadmill and watch the owner's inbox (the fault arrives within ~15 s):
   curl -s -XPOST 127.0.0.1:{where.control_port}/devices/{KILL}/mode -H 'content-type: application/json' \\
        -d '{{"mode":"dead"}}'
   OWNER=$({login % OWNER})
   curl -s {g}/api/notifications/inbox -H "authorization: Bearer $OWNER"

5. Start a live run as member 1 and watch it as member 2 (their friend):
   smartgym demo-run --gateway {g}

The {EQUIPMENT} simulated treadmills keep running while this command does; Ctrl-C stops them.
"""


def run_equipment(where: Where, operator: dict[str, str]) -> None:
    from monitoring import simulator

    asyncio.run(
        simulator.run(
            count=EQUIPMENT,
            port=where.equipment_port,
            prefix=EQUIPMENT_PREFIX,
            heartbeat_to=where.heartbeat,
            monitoring_url=where.monitoring,
            bearer=operator["authorization"].partition(" ")[2],
            branch_id=BRANCH,
            kind="treadmill",
            period_s=600,
            control_port=where.control_port,
            script=[],
            ready=lambda message: click.echo(f"equipment: {message}", err=True),
        )
    )


@click.command("demo")
@click.option("--port-offset", default=0, show_default=True, type=click.IntRange(0, 50_000))
@click.option(
    "--control-port", type=int, default=None, help="Equipment simulator's control API (default 18081+offset)."
)
def demo(port_offset: int, control_port: int | None) -> None:
    """Create a demo gym on the running installation and show what to try."""
    settings = PlatformSettings()
    if settings.environment == "production":
        raise DemoRefused("the demo creates accounts with a published password: not in production")
    plan = ports(port_offset)
    where = Where(
        gateway=f"http://127.0.0.1:{plan['gateway']}",
        monitoring=f"http://127.0.0.1:{plan['monitoring']}",
        heartbeat=("127.0.0.1", plan["monitoring_heartbeat"]),
        data_dir=settings.data_dir,
        control_port=control_port or 18081 + port_offset,
        equipment_port=18080 + port_offset,
    )
    ready = set_up(where)
    click.echo(f"  starting {EQUIPMENT} simulated treadmills ({EQUIPMENT_PREFIX}-00000…) for monitoring", err=True)
    click.echo(next_steps(where, ready))
    run_equipment(where, ready["operator"])


@click.command("demo-run")
@click.option("--gateway", default="http://127.0.0.1:8000", show_default=True)
@click.option("--seconds", type=click.IntRange(3, 25), default=10, show_default=True, help="Length of the run.")
def demo_run(gateway: str, seconds: int) -> None:
    """A live run of the demo's member 1 over the gateway's WebSockets, watched by member 2."""
    asyncio.run(_live_run(gateway, seconds))


async def _live_run(gateway: str, seconds: int) -> None:
    import aiohttp

    from running.synthetic import generate

    client = Gateway(gateway)
    try:
        runner, watcher = (client.login(email) for email in MEMBERS)
    finally:
        client.close()
    sockets = gateway.replace("http", "ws", 1) + "/api/live"
    track = generate(7, seconds=seconds, start_time=time.time())
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{sockets}/ws/runs", headers=runner) as run:
        started = await run.receive_json(timeout=10)
        run_id = started["run_id"]
        click.echo(f"member 1 started run {run_id}")
        async with session.ws_connect(f"{sockets}/ws/runs/{run_id}/watch", headers=watcher) as watch:
            hello = await watch.receive_json(timeout=10)
            click.echo(f"member 2 is {hello['type']} run {run_id}")
            for sample in track.samples:
                point = {"type": "point", "t": sample.t, "lat": sample.lat, "lon": sample.lon}
                await run.send_str(json.dumps({**point, "acc": sample.accuracy}))
                seen = await watch.receive_json(timeout=10)
                while seen.get("type") != "position":
                    seen = await watch.receive_json(timeout=10)
                click.echo(f"member 2 sees member 1 at {seen['lat']:.5f}, {seen['lon']:.5f}")
                await asyncio.sleep(0.2)
            await run.send_str(json.dumps({"type": "finish"}))
            while (message := await run.receive_json(timeout=10)).get("type") != "finished":
                pass
            summary = message.get("summary", {})
            click.echo(f"run finished: {json.dumps(summary, sort_keys=True, default=str)[:300]}")
