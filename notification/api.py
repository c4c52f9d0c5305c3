"""notification's HTTP routes: the inbox, push tokens and preferences (thin)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from common.api import CurrentPrincipal, KernelDep
from common.security import Principal
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


def _user(principal: Principal) -> uuid.UUID:
    try:
        return uuid.UUID(principal.subject)
    except ValueError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only people have an inbox") from exc


@router.get("/inbox")
async def inbox(
    principal: CurrentPrincipal,
    kernel: KernelDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    unread: bool = False,
    before_id: Annotated[int | None, Query(ge=1)] = None,
) -> InboxPage:
    user_id = _user(principal)
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
async def read(body: MarkReadIn, principal: CurrentPrincipal, kernel: KernelDep) -> dict[str, int]:
    return {"marked": await mark_read(kernel.db, _user(principal), body.message_ids)}


@router.put("/me/push-tokens", status_code=status.HTTP_204_NO_CONTENT)
async def add_push_token(body: PushTokenIn, principal: CurrentPrincipal, kernel: KernelDep) -> None:
    _user(principal)
    await register_push_token(kernel.db, principal, body.token, body.platform)


@router.delete("/me/push-tokens/{token}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_push_token(token: str, principal: CurrentPrincipal, kernel: KernelDep) -> None:
    _user(principal)
    if not await forget_push_token(kernel.db, principal, token):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such push token for you")


@router.get("/me/preferences")
async def get_preferences(principal: CurrentPrincipal, kernel: KernelDep) -> PreferencesBody:
    _user(principal)
    recipient = await preferences_of(kernel.db, principal)
    return PreferencesBody(
        locale="en" if recipient.locale == "en" else ("ko" if recipient.locale else None),
        push_enabled=recipient.push_enabled,
        quiet_start=recipient.quiet_start,
        quiet_end=recipient.quiet_end,
        timezone=recipient.timezone,
    )


@router.put("/me/preferences")
async def put_preferences(body: PreferencesBody, principal: CurrentPrincipal, kernel: KernelDep) -> PreferencesBody:
    _user(principal)
    await set_preferences(kernel.db, principal, PreferencesIn(**body.model_dump()))
    return body
