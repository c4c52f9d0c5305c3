from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from branch_owner.app import create_app
from branch_owner.settings import BranchOwnerSettings
from common.events.envelope import Event
from common.events.inprocess import InProcessBus
from common.migrations import upgrade
from common.security import Role
from contracts import (
    BranchInfoCreated,
    BranchInfoUpdated,
    BranchPreferenceCreated,
    PhotoRef,
    ReviewPosted,
    TaskConfirmed,
    TaskJudgedV2,
    TaskReviewOverdue,
    VerdictReason,
)
from tests.support import tokens
from tests.support.apps import asgi_client
from tests.support.events import recording_bus

BRANCH = "gangnam"


@dataclass
class Console:
    client: httpx.AsyncClient
    bus: InProcessBus
    events: list[Event]
    owner_id: uuid.UUID

    @property
    def owner(self) -> dict[str, str]:
        return tokens.bearer(self.owner_id, [Role.BRANCH_OWNER], (BRANCH,))

    def of(self, kind: type[Event]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    async def deliver(self, event: Event) -> None:
        from common.events.envelope import OutgoingMessage

        await self.bus.publish_many([OutgoingMessage.of(event)])

    async def judged(
        self, *, outcome: str = "needs_review", branch_id: str = BRANCH, age: timedelta = timedelta()
    ) -> TaskJudgedV2:
        now = datetime.now(UTC) - age
        event = TaskJudgedV2(
            task_id=uuid.uuid4(),
            helper_id=uuid.uuid4(),
            branch_id=branch_id,
            task_type="wash",
            category="laundry",
            title="Wash towels",
            reward_krw=3000,
            photos=(
                PhotoRef(
                    key=f"{branch_id}/{uuid.uuid4()}/0.jpg",
                    sha256="0" * 64,
                    content_type="image/jpeg",
                    size_bytes=1000,
                    width=640,
                    height=480,
                ),
            ),
            submitted_at=now - timedelta(seconds=5),
            judged_at=now,
            outcome=outcome,
            confidence=0.0 if outcome == "needs_review" else 1.0,
            reasons=(VerdictReason(code="blurred", message="photo 1 is blurred"),) if outcome == "fail" else (),
            model_version="none",
        )
        await self.deliver(event)
        return event


@pytest.fixture
async def console(tmp_path) -> AsyncIterator[Console]:
    settings = BranchOwnerSettings(
        environment="test",
        data_dir=tmp_path,
        outbox_poll_interval_s=0.05,
        review_sla_s=60,
        review_sla_check_interval_s=0.1,
    )
    upgrade("branch_owner", settings.database_url("branch_owner"))
    kinds = (
        BranchInfoCreated,
        BranchInfoUpdated,
        ReviewPosted,
        BranchPreferenceCreated,
        TaskConfirmed,
        TaskReviewOverdue,
    )
    async with recording_bus(*kinds) as recording:
        app = create_app(settings, bus=recording.bus, metrics=recording.metrics, keys=tokens.key_cache())
        async with asgi_client(app) as client:
            yield Console(client, recording.bus, recording.recorded, uuid.uuid4())
