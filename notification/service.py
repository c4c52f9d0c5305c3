"""Who is told what: events become inbox notices and queued pushes (no web framework, no
broker code here).

Every handler runs in the kernel's idempotent unit of work, so a redelivered event is
skipped before it gets here, and the notices and their queued pushes commit together
with the mark that the event was handled. Sending happens after the commit
(:mod:`notification.dispatch`), so a slow FCM never holds a broker message.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import String, cast, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.db import Database
from common.events.envelope import utc_now
from common.events.outbox import UnitOfWork
from common.security import Principal, Role
from contracts import (
    AccessDenied,
    BranchPreferenceCreated,
    EquipmentFault,
    EquipmentFaultEscalated,
    EquipmentFaultWithdrawn,
    EquipmentRecovered,
    PasswordResetRequested,
    PasswordResetRequestedV2,
    TaskConfirmed,
    TaskJudged,
    TaskReviewOverdue,
    UserDeleted,
    UserRegistered,
)
from notification.models import BranchProfile, Delivery, GateDenial, InboxMessage, PushToken, Recipient
from notification.pushes import PushSender, QueuedPush, pushes_of
from notification.settings import NotificationSettings
from notification.sms import sms_token
from notification.templates import render


@dataclass(frozen=True)
class Notice:
    kind: str
    fields: dict[str, object]
    critical: bool  # critical notices ignore quiet hours
    data: dict[str, str]


def quiet_until(recipient: Recipient, now: datetime) -> datetime | None:
    """When the recipient's quiet hours end, if ``now`` is inside them (the window may wrap
    past midnight, in the recipient's own timezone)."""
    if not recipient.quiet_start or not recipient.quiet_end:
        return None
    try:
        zone = ZoneInfo(recipient.timezone)
    except ZoneInfoNotFoundError:
        zone = ZoneInfo("Asia/Seoul")
    local = now.astimezone(zone)
    start, end = time.fromisoformat(recipient.quiet_start), time.fromisoformat(recipient.quiet_end)
    clock = local.time()
    inside = start <= clock < end if start < end else clock >= start or clock < end
    if not inside:
        return None
    ends = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if ends <= local:
        ends += timedelta(days=1)
    return ends


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m" if hours else f"{minutes}m {secs}s"


class Notifier:
    def __init__(self, settings: NotificationSettings, *, dispatcher: PushSender) -> None:
        self._settings = settings
        self._dispatcher = dispatcher

    # -- event handlers -------------------------------------------------------------------

    async def user_registered(self, event: UserRegistered, uow: UnitOfWork) -> None:
        recipient = await recipient_of(uow.session, event.user_id, roles=list(event.roles), branches=None)
        await self.tell(uow, event.event_id, [recipient], Notice("welcome", {}, critical=False, data={}))

    async def equipment_fault(self, event: EquipmentFault, uow: UnitOfWork) -> None:
        notice = Notice(
            "equipment_fault",
            {"branch_id": event.branch_id, "name": event.name, "kind": event.kind, "reason": event.reason},
            critical=event.criticality == "critical",
            data=_equipment_data(event.fault_id, event.device_id, event.branch_id, "fault"),
        )
        await self.tell(uow, event.event_id, await _owners(uow.session, event.branch_id), notice)

    async def equipment_recovered(self, event: EquipmentRecovered, uow: UnitOfWork) -> None:
        notice = Notice(
            "equipment_recovered",
            {"branch_id": event.branch_id, "name": event.name, "down_for": _duration(event.down_for_s)},
            critical=False,
            data=_equipment_data(event.fault_id, event.device_id, event.branch_id, "recovered"),
        )
        await self.tell(uow, event.event_id, await _owners(uow.session, event.branch_id), notice)

    async def equipment_escalated(self, event: EquipmentFaultEscalated, uow: UnitOfWork) -> None:
        notice = Notice(
            "equipment_escalated",
            {"branch_id": event.branch_id, "name": event.name, "reason": event.reason},
            critical=True,
            data=_equipment_data(event.fault_id, event.device_id, event.branch_id, "escalated"),
        )
        await self.tell(uow, event.event_id, await _operators(uow.session), notice)

    async def equipment_withdrawn(self, event: EquipmentFaultWithdrawn, uow: UnitOfWork) -> None:
        """Whoever was told of the fault hears it is over: the branch's owners, and the
        operations team when it had been handed to them."""
        notice = Notice(
            "equipment_withdrawn",
            {"branch_id": event.branch_id, "name": event.name},
            # An escalated fault paged people through their quiet hours; so does its end.
            critical=event.escalated,
            data=_equipment_data(event.fault_id, event.device_id, event.branch_id, "withdrawn"),
        )
        recipients = await _owners(uow.session, event.branch_id)
        if event.escalated:
            told = {recipient.user_id for recipient in recipients}
            recipients += [row for row in await _operators(uow.session) if row.user_id not in told]
        await self.tell(uow, event.event_id, recipients, notice)

    async def task_judged(self, event: TaskJudged, uow: UnitOfWork) -> None:
        helper = await recipient_of(uow.session, event.helper_id, roles=[Role.HELPER.value], branches=None)
        approved = event.verdict == "approved"
        notice = Notice(
            "task_approved" if approved else "task_rejected",
            {"payout_krw": f"{event.payout_krw:,}", "reason": event.reason or "-"},
            critical=False,
            data={"kind": "task_judged", "task_id": str(event.task_id), "verdict": event.verdict},
        )
        await self.tell(uow, event.event_id, [helper], notice)

    async def task_confirmed(self, event: TaskConfirmed, uow: UnitOfWork) -> None:
        """The owner's decision is what pays (TaskJudged v2 only advises), so helpers hear of it."""
        helper = await recipient_of(uow.session, event.helper_id, roles=[Role.HELPER.value], branches=None)
        approved = event.decision == "approved"
        notice = Notice(
            "task_approved" if approved else "task_rejected",
            {"payout_krw": f"{event.reward_krw:,}", "reason": event.reason or "-"},
            critical=False,
            data={"kind": "task_confirmed", "task_id": str(event.task_id), "decision": event.decision},
        )
        await self.tell(uow, event.event_id, [helper], notice)

    async def task_review_overdue(self, event: TaskReviewOverdue, uow: UnitOfWork) -> None:
        notice = Notice(
            "task_review_overdue",
            {"branch_id": event.branch_id, "title": event.title, "waited": _duration(event.waited_s)},
            critical=False,
            data={"kind": "task_review_overdue", "task_id": str(event.task_id), "branch_id": event.branch_id},
        )
        await self.tell(uow, event.event_id, await _owners(uow.session, event.branch_id), notice)

    async def branch_preference(self, event: BranchPreferenceCreated, uow: UnitOfWork) -> None:
        profile = await uow.session.get(BranchProfile, event.branch_id)
        _memo(uow.session).pop(("no profile", event.branch_id), None)
        if profile is None:
            profile = BranchProfile(branch_id=event.branch_id)
            uow.session.add(profile)
        profile.preference_id = event.preference_id
        profile.default_locale = event.default_locale
        profile.topics = list(event.topics)
        profile.updated_at = utc_now()
        await uow.session.flush()
        notice = Notice(
            "branch_profile",
            {"branch_id": event.branch_id, "topics": ", ".join(event.topics) or "-"},
            critical=False,
            data={"kind": "branch_profile", "branch_id": event.branch_id},
        )
        await self.tell(uow, event.event_id, await _owners(uow.session, event.branch_id), notice)

    async def access_denied(self, event: AccessDenied, uow: UnitOfWork) -> None:
        """One notice when refusals at a gate reach the threshold within the window — not one
        per refusal, and not again until the burst has passed."""
        session = uow.session
        window = timedelta(seconds=self._settings.notification_denials_window_s)
        session.add(
            GateDenial(
                branch_id=event.branch_id, gate_id=event.gate_id, reason=event.reason, decided_at=event.decided_at
            )
        )
        await session.execute(delete(GateDenial).where(GateDenial.decided_at < utc_now() - 2 * window))
        await session.flush()
        recent = await session.scalar(
            select(func.count())
            .select_from(GateDenial)
            .where(
                GateDenial.branch_id == event.branch_id,
                GateDenial.gate_id == event.gate_id,
                GateDenial.decided_at > event.decided_at - window,
                GateDenial.decided_at <= event.decided_at,
            )
        )
        if recent != self._settings.notification_denials_threshold:
            return
        notice = Notice(
            "gate_denials",
            {
                "branch_id": event.branch_id,
                "gate_id": event.gate_id,
                "count": recent,
                "window_min": max(1, round(window.total_seconds() / 60)),
                "reason": event.reason,
            },
            critical=False,
            data={"kind": "gate_denials", "branch_id": event.branch_id, "gate_id": event.gate_id},
        )
        await self.tell(uow, event.event_id, await _owners(uow.session, event.branch_id), notice)

    async def password_reset(self, event: PasswordResetRequested | PasswordResetRequestedV2, uow: UnitOfWork) -> None:
        # The code travels only in the push's data (for the app to open the reset screen)
        # or in the SMS text of a phone-only account; the visible push text and the inbox
        # never show it, and the delivery rows drop it once sent (notification.dispatch).
        # Not critical: a stranger asking for a member's reset must not wake them at night.
        member = await recipient_of(uow.session, event.user_id, roles=None, branches=None)
        notice = Notice(
            "password_reset",
            {},
            critical=False,
            data={
                "kind": "password_reset",
                "reset_token": event.reset_token,
                "expires_at": event.expires_at.isoformat(),
            },
        )
        await self.tell(uow, event.event_id, [member], notice)
        phone = getattr(event, "phone", None)
        if phone is None:
            return
        message_id = await uow.session.scalar(
            select(InboxMessage.id).where(
                InboxMessage.user_id == member.user_id, InboxMessage.source_event_id == event.event_id
            )
        )
        now = utc_now()
        text = render("password_reset_sms", member.locale, {"code": event.reset_token})
        uow.session.add(
            Delivery(
                message_id=message_id,
                user_id=member.user_id,
                token=sms_token(phone),
                title=text.title,
                body=text.body,
                data=dict(notice.data),
                critical=False,
                status="pending",
                attempts=0,
                next_attempt_at=quiet_until(member, now) or now,
                created_at=now,
            )
        )
        uow.after_commit(self._dispatcher.wake)

    async def user_deleted(self, event: UserDeleted, uow: UnitOfWork) -> None:
        await forget_user(uow.session, user_id=event.user_id)

    # -- the common path ------------------------------------------------------------------

    async def tell(self, uow: UnitOfWork, event_id: uuid.UUID, recipients: Sequence[Recipient], notice: Notice) -> None:
        if not recipients:
            return
        session = uow.session
        now = utc_now()
        branch_locale = await _branch_locale(session, notice.data.get("branch_id"))
        tokens = await _tokens_of(session, [recipient.user_id for recipient in recipients])
        pushes = pushes_of(uow, self._dispatcher)
        for recipient in recipients:
            text = render(notice.kind, recipient.locale or branch_locale, notice.fields)
            message = InboxMessage(
                user_id=recipient.user_id,
                kind=notice.kind,
                title=text.title,
                body=text.body,
                source_event_id=event_id,
                created_at=now,
                critical=notice.critical,
            )
            session.add(message)
            if not recipient.push_enabled:
                continue
            due = now if notice.critical else (quiet_until(recipient, now) or now)
            for token in tokens.get(recipient.user_id, ()):
                pushes.append(
                    QueuedPush(
                        message, recipient.user_id, token, text.title, text.body, notice.data, notice.critical, due, now
                    )
                )


# Lookups the handlers of one transaction share: a batch of events applied in one unit of
# work asks "who owns this branch" many times. Kept in the session's own info dict, so it
# ends with the transaction; cleared by whatever changes recipients or tokens.
_MEMO = "notification.memo"


def _memo(session: AsyncSession) -> dict[object, object]:
    memo: dict[object, object] = session.info.setdefault(_MEMO, {})
    return memo


def _equipment_data(fault_id: uuid.UUID, device_id: str, branch_id: str, state: str) -> dict[str, str]:
    return {
        "kind": f"equipment_{state}",
        "fault_id": str(fault_id),
        "device_id": device_id,
        "branch_id": branch_id,
    }


async def recipient_of(
    session: AsyncSession, user_id: uuid.UUID, *, roles: list[str] | None, branches: list[str] | None
) -> Recipient:
    recipient = await session.get(Recipient, user_id)
    if recipient is None:
        _memo(session).clear()
        recipient = Recipient(
            user_id=user_id,
            roles=roles or [Role.CUSTOMER.value],
            branches=branches or [],
            push_enabled=True,
            timezone="Asia/Seoul",
            updated_at=utc_now(),
        )
        session.add(recipient)
        await session.flush()
    return recipient


async def _with_role(session: AsyncSession, role: Role) -> list[Recipient]:
    memo = _memo(session)
    key = ("role", role.value)
    if key not in memo:
        # Staff are few (hundreds); the LIKE narrows the scan, the check below is exact.
        rows = await session.scalars(select(Recipient).where(cast(Recipient.roles, String).like(f'%"{role.value}"%')))
        memo[key] = [row for row in rows if role.value in row.roles]
    return list(cast_list(memo[key]))


async def _owners(session: AsyncSession, branch_id: str) -> list[Recipient]:
    return [row for row in await _with_role(session, Role.BRANCH_OWNER) if branch_id in row.branches]


async def _operators(session: AsyncSession) -> list[Recipient]:
    return await _with_role(session, Role.OPERATOR)


async def _tokens_of(session: AsyncSession, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    memo = _memo(session)
    missing = [user_id for user_id in user_ids if ("tokens", user_id) not in memo]
    if missing:
        rows = await session.execute(select(PushToken.user_id, PushToken.token).where(PushToken.user_id.in_(missing)))
        found: dict[uuid.UUID, list[str]] = {user_id: [] for user_id in missing}
        for user_id, token in rows:
            found[user_id].append(token)
        for user_id, tokens in found.items():
            memo[("tokens", user_id)] = tokens
    return {user_id: list(cast_list(memo[("tokens", user_id)])) for user_id in user_ids}


async def _branch_locale(session: AsyncSession, branch_id: str | None) -> str | None:
    if branch_id is None:
        return None
    memo = _memo(session)
    key = ("no profile", branch_id)
    if key in memo:  # the identity map remembers profiles found, not profiles missing
        return None
    profile = await session.get(BranchProfile, branch_id)
    if profile is None:
        memo[key] = True
        return None
    return profile.default_locale


def cast_list(value: object) -> list[Any]:
    assert isinstance(value, list)
    return value


async def forget_user(session: AsyncSession, *, user_id: uuid.UUID) -> None:
    """A deleted account: its push tokens, its pushes not yet sent (they name a token),
    its inbox and its preferences go. Safe to repeat."""
    _memo(session).clear()
    await session.execute(delete(PushToken).where(PushToken.user_id == user_id))
    await session.execute(delete(Delivery).where(Delivery.user_id == user_id))
    await session.execute(delete(InboxMessage).where(InboxMessage.user_id == user_id))
    await session.execute(delete(Recipient).where(Recipient.user_id == user_id))


# -- what users do through the API ---------------------------------------------------------


def _user_id(principal: Principal) -> uuid.UUID:
    if principal.user_id is None:  # the API refuses devices before this
        raise ValueError("notification preferences belong to people")
    return principal.user_id


async def remember_recipient(session: AsyncSession, principal: Principal) -> Recipient:
    """Roles and branches as the caller's token states them now: routing follows the token."""
    recipient = await recipient_of(session, _user_id(principal), roles=None, branches=None)
    recipient.roles = sorted(role.value for role in principal.roles)
    recipient.branches = sorted(principal.branches)
    recipient.updated_at = utc_now()
    return recipient


async def register_push_token(database: Database, principal: Principal, token: str, platform: str) -> None:
    async with database.sessions() as session, session.begin():
        await remember_recipient(session, principal)
        existing = await session.get(PushToken, token)
        if existing is None:
            session.add(PushToken(token=token, user_id=_user_id(principal), platform=platform, created_at=utc_now()))
        else:
            # The same installation signed in as somebody else: the token follows the new user.
            existing.user_id, existing.platform = _user_id(principal), platform


async def forget_push_token(database: Database, principal: Principal, token: str) -> bool:
    async with database.sessions() as session, session.begin():
        result = await session.execute(
            delete(PushToken).where(PushToken.token == token, PushToken.user_id == _user_id(principal))
        )
        return bool(getattr(result, "rowcount", 0))


@dataclass(frozen=True)
class PreferencesIn:
    locale: str | None
    push_enabled: bool
    quiet_start: str | None
    quiet_end: str | None
    timezone: str


async def set_preferences(database: Database, principal: Principal, preferences: PreferencesIn) -> Recipient:
    async with database.sessions() as session, session.begin():
        recipient = await remember_recipient(session, principal)
        recipient.locale = preferences.locale
        recipient.push_enabled = preferences.push_enabled
        recipient.quiet_start, recipient.quiet_end = preferences.quiet_start, preferences.quiet_end
        recipient.timezone = preferences.timezone
    return recipient


async def preferences_of(database: Database, principal: Principal) -> Recipient:
    async with database.sessions() as session, session.begin():
        return await remember_recipient(session, principal)


async def inbox_of(
    database: Database, user_id: uuid.UUID, *, limit: int, unread_only: bool = False, before_id: int | None = None
) -> Sequence[InboxMessage]:
    query = select(InboxMessage).where(InboxMessage.user_id == user_id)
    if unread_only:
        query = query.where(InboxMessage.read_at.is_(None))
    if before_id is not None:
        query = query.where(InboxMessage.id < before_id)
    async with database.sessions() as session:
        result = await session.scalars(query.order_by(InboxMessage.id.desc()).limit(limit))
        return result.all()


async def unread_count(database: Database, user_id: uuid.UUID) -> int:
    async with database.sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(InboxMessage)
            .where(InboxMessage.user_id == user_id, InboxMessage.read_at.is_(None))
        )
        return int(count or 0)


async def mark_read(database: Database, user_id: uuid.UUID, message_ids: Sequence[int]) -> int:
    now = utc_now()
    async with database.sessions() as session, session.begin():
        rows = (
            await session.scalars(
                select(InboxMessage).where(
                    InboxMessage.user_id == user_id, InboxMessage.id.in_(message_ids), InboxMessage.read_at.is_(None)
                )
            )
        ).all()
        for row in rows:
            row.read_at = now
        return len(rows)
