from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class InboxMessagePublic(BaseModel):
    id: int
    kind: str
    title: str
    body: str
    created_at: datetime
    read: bool
