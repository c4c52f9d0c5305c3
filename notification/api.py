"""notification's HTTP routes: the inbox, push tokens and preferences (thin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status

from common.api import CurrentPrincipal, CurrentUserId, KernelDep, current_user_id
from common.db import MAX_ROW_ID
from notification.schemas import InboxMessagePublic, InboxPage, MarkReadIn, PreferencesBody, PushTokenIn
from notification.service import (
    PreferencesIn,
    forget_push_token,
    inbox_of,
    mark_read,
    preferences_of,
    register_push_token,
    set_preferences,
    unread_count,
)

router = APIRouter()
# Push tokens and preferences belong to people; the routes also read the caller's roles.
PEOPLE_ONLY = Depends(current_user_id)


@router.get("/inbox")
async def inbox(
    user_id: CurrentUserId,
    kernel: KernelDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    unread: bool = False,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
) -> InboxPage:
    messages = await inbox_of(kernel.db, user_id, limit=limit, unread_only=unread, before_id=before_id)
    return InboxPage(
        messages=[
            InboxMessagePublic(
                id=message.id,
                kind=message.kind,
                title=message.title,
                body=message.body,
                created_at=message.created_at,
                read=message.read_at is not None,
                critical=message.critical,
            )
            for message in messages
        ],
        unread=await unread_count(kernel.db, user_id),
        next_before_id=messages[-1].id if len(messages) == limit else None,
    )


@router.post("/inbox/read")
async def read(body: MarkReadIn, user_id: CurrentUserId, kernel: KernelDep) -> dict[str, int]:
    return {"marked": await mark_read(kernel.db, user_id, body.message_ids)}


@router.put("/me/push-tokens", status_code=status.HTTP_204_NO_CONTENT, dependencies=[PEOPLE_ONLY])
async def add_push_token(
    body: PushTokenIn, principal: CurrentPrincipal, _person: CurrentUserId, kernel: KernelDep
) -> None:
    await register_push_token(kernel.db, principal, body.token, body.platform)


@router.delete("/me/push-tokens/{token}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[PEOPLE_ONLY])
async def remove_push_token(token: str, principal: CurrentPrincipal, kernel: KernelDep) -> None:
    if not await forget_push_token(kernel.db, principal, token):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such push token for you")


@router.get("/me/preferences", dependencies=[PEOPLE_ONLY])
async def get_preferences(principal: CurrentPrincipal, kernel: KernelDep) -> PreferencesBody:
    recipient = await preferences_of(kernel.db, principal)
    return PreferencesBody(
        locale="en" if recipient.locale == "en" else ("ko" if recipient.locale else None),
        push_enabled=recipient.push_enabled,
        quiet_start=recipient.quiet_start,
        quiet_end=recipient.quiet_end,
        timezone=recipient.timezone,
    )


@router.put("/me/preferences", dependencies=[PEOPLE_ONLY])
async def put_preferences(
    body: PreferencesBody, principal: CurrentPrincipal, _person: CurrentUserId, kernel: KernelDep
) -> PreferencesBody:
    await set_preferences(kernel.db, principal, PreferencesIn(**body.model_dump()))
    return body
