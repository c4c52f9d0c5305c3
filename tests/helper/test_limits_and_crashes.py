"""What must hold on PostgreSQL under pressure: the daily limit against parallel submits,
and the ledger when the consumer process dies in the middle of a credit."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid

import httpx
import psycopg
import pytest
from sqlalchemy import create_engine, text

from common.migrations import upgrade
from common.security import Role
from contracts import TaskJudgedV2, TaskSubmitted
from helper.app import create_app
from helper.settings import HelperSettings
from tests.helper.conftest import BRANCH, HelperApp
from tests.helper.images import jpeg, scene
from tests.helper.loop import task_loop
from tests.helper.test_task_loop import REWARD, has_balance, prepare, queued, submit
from tests.support import tokens
from tests.support.apps import asgi_client, serving
from tests.support.events import recording_bus
from tests.support.processes import clean_env, start, wait_healthy
from tests.support.waiting import eventually


async def test_twenty_parallel_submits_never_pass_the_daily_limit(tmp_path, postgres):
    settings = HelperSettings(
        environment="test", data_dir=tmp_path, database_urls={"helper": postgres.create("helper")}
    )
    upgrade("helper", settings.database_url("helper"))
    async with recording_bus(TaskSubmitted, TaskJudgedV2) as recording:
        app = create_app(settings, bus=recording.bus, metrics=recording.metrics, keys=tokens.key_cache())
        async with asgi_client(app) as client:
            helper = HelperApp(
                client, settings, recording.recorded, owner=tokens.bearer(uuid.uuid4(), [Role.BRANCH_OWNER], (BRANCH,))
            )
            await helper.task_type("wash", daily_limit=5)
            await helper.bind()
            photos = [jpeg(scene(200 + index)) for index in range(20)]
            answers = await asyncio.gather(*(helper.submit(photo) for photo in photos))
            assert sorted(answer.status_code for answer in answers) == [201] * 5 + [429] * 15
            assert "daily limit of 5" in next(a for a in answers if a.status_code == 429).json()["detail"]
            engine = create_engine(settings.database_url("helper").replace("+psycopg", "+psycopg"))
            with engine.connect() as connection:
                assert connection.execute(text("SELECT count(*) FROM tasks")).scalar() == 5
                assert connection.execute(text("SELECT used FROM daily_counts")).scalar() == 5
            engine.dispose()
            # Another task type has its own limit.
            await helper.task_type("fold", daily_limit=1)
            assert (await helper.submit(jpeg(scene(230)), task_type="fold")).status_code == 201


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.mark.slow
async def test_a_consumer_killed_in_the_middle_of_a_credit_pays_once(
    tmp_path, postgres, rabbitmq_url, namespace, broker_cleanup
):
    async with task_loop(
        tmp_path, postgres=postgres, broker_url=rabbitmq_url, namespace=namespace, in_process_helper=False
    ) as (loop, helper):
        env = clean_env(
            SMARTGYM_ENVIRONMENT="test",
            SMARTGYM_DATA_DIR=str(tmp_path),
            SMARTGYM_HELPER_DATABASE_URL=helper["database"],
            SMARTGYM_BROKER_URL=rabbitmq_url,
            SMARTGYM_BUS_NAMESPACE=namespace,
            SMARTGYM_AUTH_URL=helper["settings"].auth_url,
            SMARTGYM_OUTBOX_POLL_INTERVAL_S="0.1",
        )
        args = ["serve", "helper", "--host", "127.0.0.1", "--port", str(helper["port"])]
        first = start(args, env=env, cwd=os.getcwd(), log=tmp_path / "helper-1.log")
        try:
            wait_healthy(helper["url"], first, tmp_path / "helper-1.log")
            await prepare(loop)
            task_id = await submit(loop, seed=301)
            await queued(loop, task_id)
            # Hold the task's row: the credit is written, then the handler waits on the row.
            with psycopg.connect(_libpq(helper["database"])) as blocker:
                blocker.execute("SELECT id FROM tasks WHERE id = %s FOR UPDATE", (uuid.UUID(task_id),))
                decided = await loop.gateway.post(
                    f"/api/branch-owner/v1/branches/{BRANCH}/queue/{task_id}/decision",
                    json={"decision": "approve"},
                    headers=loop.owner,
                )
                assert decided.status_code == 200

                def handler_waiting() -> bool:
                    with psycopg.connect(_libpq(helper["database"])) as probe:
                        rows = probe.execute(
                            "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock'"
                        ).fetchall()
                        return any("UPDATE tasks" in row[0] for row in rows)

                await eventually(handler_waiting, timeout=20)
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=10)
                blocker.rollback()
            # A replacement takes over the queue (in this process: it starts faster).
            replacement = create_app(helper["settings"], keys=tokens.key_cache())
            async with serving(replacement, helper["port"]):
                await eventually(lambda: has_balance(loop, REWARD), timeout=30)
                await asyncio.sleep(1.0)  # anything else in flight lands too
                assert loop.query(loop.helper_db, "SELECT count(*) AS n FROM ledger_entries")[0].n == 1
                async with httpx.AsyncClient() as direct:
                    mine = await direct.get(f"{helper['url']}/v1/me/tasks/{task_id}", headers=loop.helper)
                assert mine.json()["status"] == "approved"
        finally:
            if first.poll() is None:
                first.terminate()
                first.wait(timeout=20)
