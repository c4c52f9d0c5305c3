"""Helpers' tasks as a steady load, for runs that watch the services over minutes
(``bench/perf_memory.py``).

helper and branch_owner run as their own processes. A helper submits a task with a
phone-sized photo (a new scene each time) at ``task_rate`` a second; helper checks and
judges it and tells branch_owner, whose queue the branch's owner pages once a second,
approving what waits there (which credits the helper's ledger). Every answer is checked,
and at the end every submitted task must have been judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench._common import ROOT, count_answer, error_counts, fail, paced, stop_quietly, unexpected
from common.migrations import upgrade
from common.security import Role
from tests.helper.images import scene
from tests.support import tokens
from tests.support.apps import free_port, serving
from tests.support.infra import PostgresDatabases
from tests.support.processes import clean_env, start, wait_healthy

BRANCH = "bench-helpers"
TASK_TYPE = "wash"


def _photo(seed: int) -> bytes:
    buffer = io.BytesIO()
    scene(seed, size=(1280, 960)).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@dataclass
class HelpersLoad:
    helper_url: str
    owner_url: str
    helper_id: uuid.UUID
    owner_id: uuid.UUID
    task_rate: float
    pids: dict[str, int]
    submitted: list[str] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)

    async def run(self, seconds: float) -> None:
        seeds = itertools.count(20_000)
        async with httpx.AsyncClient(timeout=30) as client:

            async def submit() -> None:
                data = await asyncio.to_thread(_photo, next(seeds))
                response = await client.post(
                    f"{self.helper_url}/v1/tasks",
                    data={"branch_id": BRANCH, "task_type": TASK_TYPE, "client_key": uuid.uuid4().hex},
                    files=[("photos", ("p.jpg", data, "image/jpeg"))],
                    headers=tokens.bearer(self.helper_id, [Role.HELPER]),
                )
                if count_answer(self.outcomes, "submit", response, 201):
                    self.submitted.append(response.json()["id"])

            async def review() -> None:
                owner = tokens.bearer(self.owner_id, [Role.BRANCH_OWNER], [BRANCH])
                page = await client.get(f"{self.owner_url}/v1/branches/{BRANCH}/queue?limit=50", headers=owner)
                if not count_answer(self.outcomes, "queue page", page, 200) or not page.json()["items"]:
                    return
                task_ids = [item["task_id"] for item in page.json()["items"]]
                decided = await client.post(
                    f"{self.owner_url}/v1/branches/{BRANCH}/queue/decisions",
                    json={"task_ids": task_ids, "decision": "approve"},
                    headers=owner,
                )
                if count_answer(self.outcomes, "decisions", decided, 200):
                    # Answered 200 whatever became of each task: every one must say approved.
                    for result in decided.json():
                        self.outcomes["approved" if result["ok"] else f"decision: {result['result'][:60]}"] += 1

            submits, reviews = await asyncio.gather(paced(submit, self.task_rate, seconds), paced(review, 1.0, seconds))
        self.outcomes.update(error_counts("submit", submits) + error_counts("review", reviews))

    async def verify(self, *, drain_s: float = 60.0) -> dict[str, Any]:
        """Waits for the last tasks' verdicts; a task never judged fails the run."""
        unjudged = list(self.submitted)
        deadline = time.monotonic() + drain_s
        async with httpx.AsyncClient(base_url=self.helper_url, timeout=30) as client:
            while unjudged and time.monotonic() < deadline:
                still = []
                for task_id in unjudged:
                    task = await client.get(
                        f"/v1/me/tasks/{task_id}", headers=tokens.bearer(self.helper_id, [Role.HELPER])
                    )
                    if task.status_code != 200 or task.json()["status"] == "submitted":
                        still.append(task_id)
                unjudged = still
                if unjudged:
                    await asyncio.sleep(1.0)
        wrong = unexpected("helpers", self.outcomes, ("submit", "queue page", "decisions", "approved"))
        if unjudged:
            fail(f"helpers: {len(unjudged)} of {len(self.submitted)} tasks never judged")
        return {
            "tasks": len(self.submitted),
            "unjudged": len(unjudged),
            "queue_pages": self.outcomes["queue page"],
            "approved": self.outcomes["approved"],
            "unexpected": wrong,
        }


@contextlib.asynccontextmanager
async def helpers_load(
    *, databases: PostgresDatabases, broker_url: str, namespace: str, scratch: Path, task_rate: float
) -> AsyncIterator[HelpersLoad]:
    """helper and branch_owner started and healthy, the task type set up and the helper
    taken on by the branch; stopped on the way out."""
    processes: list[Any] = []
    urls: dict[str, str] = {}
    try:
        async with serving(tokens.jwks_app()) as auth_url:
            for service in ("helper", "branch_owner"):
                database = databases.create(f"bench_helpers_{service}")
                upgrade(service, database)
                port = free_port()
                env = clean_env(
                    SMARTGYM_BROKER_URL=broker_url,
                    SMARTGYM_BUS_NAMESPACE=namespace,
                    SMARTGYM_AUTH_URL=auth_url,
                    SMARTGYM_DATA_DIR=str(scratch / service),
                    SMARTGYM_LOG_LEVEL="WARNING",
                    **{f"SMARTGYM_{service.upper()}_DATABASE_URL": database},
                )
                log = scratch / f"{service}.log"
                process = start(["serve", service, "--port", str(port)], env=env, cwd=ROOT, log=log)
                processes.append(process)
                urls[service] = f"http://127.0.0.1:{port}"
                await asyncio.to_thread(wait_healthy, urls[service], process, log)
            owner_id, helper_id = uuid.uuid4(), uuid.uuid4()
            owner = tokens.bearer(owner_id, [Role.BRANCH_OWNER], [BRANCH])
            async with httpx.AsyncClient(base_url=urls["helper"], timeout=30) as client:
                spec = {"category": "laundry", "title": "Wash towels", "reward_krw": 3000, "daily_limit": 500}
                (await client.put(f"/v1/branches/{BRANCH}/task-types/{TASK_TYPE}", json=spec, headers=owner)
                 ).raise_for_status()  # fmt: skip
                (await client.put(f"/v1/branches/{BRANCH}/helpers/{helper_id}", headers=owner)).raise_for_status()
            yield HelpersLoad(
                helper_url=urls["helper"],
                owner_url=urls["branch_owner"],
                helper_id=helper_id,
                owner_id=owner_id,
                task_rate=task_rate,
                pids={"helper": processes[0].pid, "branch_owner": processes[1].pid},
            )
    finally:
        for process in reversed(processes):
            stop_quietly(process)
