"""notification's HTTP routes."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from common.api import CurrentPrincipal, KernelDep
from notification.schemas import InboxMessagePublic
from notification.service import inbox_of

router = APIRouter()


@router.get("/inbox")
async def inbox(
    principal: CurrentPrincipal, kernel: KernelDep, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[InboxMessagePublic]:
    try:
        user_id = uuid.UUID(principal.subject)
    except ValueError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "no inbox for this principal") from exc
    messages = await inbox_of(kernel.db, user_id, limit=limit)
    return [
        InboxMessagePublic(
            id=message.id,
            kind=message.kind,
            title=message.title,
            body=message.body,
            created_at=message.created_at,
            read=message.read_at is not None,
        )
        for message in messages
    ]
