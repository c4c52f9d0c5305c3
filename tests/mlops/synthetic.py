"""Synthetic helper data for training: tasks with photos in helper's database and photo
directory (as helper stores them), and the owners' TaskConfirmed decisions on them.

A "done" photo is a bright, even surface; a "not done" one is darker with dark blotches
(laundry left, a dirty floor). Each task's photo varies, so the model has to generalise.
"""

from __future__ import annotations

import hashlib
import io
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image, ImageDraw
from sqlalchemy import create_engine, insert

from common.db import sync_url
from contracts import TaskConfirmed
from helper.models import Task, TaskPhoto

BRANCH = "gangnam"


def photo(done: bool, rng: random.Random, size: int = 96) -> bytes:
    base = rng.randint(170, 235) if done else rng.randint(90, 150)
    tint = (base + rng.randint(-12, 12), base + rng.randint(-12, 12), base + rng.randint(-12, 12))
    image = Image.new("RGB", (size, size), tint)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(0, 2) if done else rng.randint(4, 9)):
        x, y = rng.randint(0, size - 20), rng.randint(0, size - 20)
        shade = rng.randint(150, 200) if done else rng.randint(10, 60)
        draw.ellipse((x, y, x + rng.randint(8, 30), y + rng.randint(8, 30)), fill=(shade, shade, shade))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@dataclass(frozen=True)
class Seeded:
    events: list[TaskConfirmed]
    corrections: int


def seed_helper(
    *, helper_url: str, photo_dir: Path, tasks: int, corrections: int, helpers: int = 10, seed: int = 7
) -> Seeded:
    """``tasks`` confirmed tasks with one photo each; the first ``corrections`` of them (in
    a shuffled order) overrode the AI's verdict."""
    rng = random.Random(seed)
    helper_ids = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(helpers)]
    start = datetime(2026, 11, 1, tzinfo=UTC)
    corrected = set(rng.sample(range(tasks), corrections))
    engine = create_engine(sync_url(helper_url))
    events: list[TaskConfirmed] = []
    task_rows, photo_rows = [], []
    for index in range(tasks):
        task_id = uuid.UUID(int=rng.getrandbits(128))
        helper_id = helper_ids[index % helpers]
        done = rng.random() < 0.5
        submitted = start + timedelta(hours=index * 3)
        data = photo(done, rng)
        key = f"{BRANCH}/{task_id}/0.png"
        (photo_dir / key).parent.mkdir(parents=True, exist_ok=True)
        (photo_dir / key).write_bytes(data)
        ai_right = index not in corrected
        ai_outcome = ("pass" if done else "fail") if ai_right else ("fail" if done else "pass")
        task_rows.append(
            {
                "id": task_id,
                "helper_id": helper_id,
                "branch_id": BRANCH,
                "task_type": "wash",
                "category": "laundry",
                "title": "Wash",
                "client_key": task_id.hex,
                "reward_krw": 3000,
                "expected_photos": 1,
                "photo_count": 1,
                "status": "approved" if done else "rejected",
                "submitted_at": submitted,
                "reasons": [],
            }
        )
        photo_rows.append(
            {
                "task_id": task_id,
                "position": 0,
                "branch_id": BRANCH,
                "key": key,
                "sha256": hashlib.sha256(data).hexdigest(),
                "content_type": "image/png",
                "size_bytes": len(data),
                "width": 96,
                "height": 96,
                "phash": 0,
                "submitted_at": submitted,
            }
        )
        events.append(
            TaskConfirmed(
                task_id=task_id,
                helper_id=helper_id,
                branch_id=BRANCH,
                task_type="wash",
                decision="approved" if done else "rejected",
                final_label="done" if done else "not_done",
                ai_outcome=ai_outcome,
                ai_overridden=not ai_right,
                reward_krw=3000,
                decided_by=uuid.uuid4(),
                decided_at=submitted + timedelta(hours=1),
            )
        )
    with engine.begin() as connection:
        connection.execute(insert(Task), task_rows)
        connection.execute(insert(TaskPhoto), photo_rows)
    engine.dispose()
    return Seeded(events, len(corrected))
