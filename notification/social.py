"""Notices from running: friends out running, race results, steps, friends accepted,
walking together and shared step goals. Each handler picks who among the people the event
names is told; the common path (:meth:`notification.service.Notifier.tell`) writes the
inbox notices and queues the pushes in the same idempotent unit of work."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence

from common.events.outbox import UnitOfWork
from contracts import (
    FriendRequestAccepted,
    OutingEnded,
    OutingInvited,
    OutingStarted,
    RaceFinished,
    RunStarted,
    StepGoalReached,
    StepRankChanged,
)
from notification.models import Recipient
from notification.service import Notice, recipient_of

Tell = Callable[[UnitOfWork, uuid.UUID, Sequence[Recipient], Notice], Awaitable[None]]
MAX_RECIPIENTS = 50  # outings and step goals are small groups (the events cap them too)


def clock(seconds: float) -> str:
    """A race time as runners write it: 24:05 or 1:02:09."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class SocialNotices:
    def __init__(self, *, tell: Tell) -> None:
        self._tell = tell

    async def _members(self, uow: UnitOfWork, users: Iterable[uuid.UUID]) -> list[Recipient]:
        unique = list(dict.fromkeys(users))[:MAX_RECIPIENTS]
        return [await recipient_of(uow.session, user, roles=None, branches=None) for user in unique]

    async def friend_started_running(self, event: RunStarted, uow: UnitOfWork) -> None:
        if event.race_id is not None:
            return  # racers are told by the race itself
        notice = Notice(
            "friend_running",
            {},
            critical=False,
            data={"kind": "friend_running", "run_id": str(event.run_id), "user_id": str(event.user_id)},
        )
        await self._tell(uow, event.event_id, await self._members(uow, event.friends), notice)

    async def race_finished(self, event: RaceFinished, uow: UnitOfWork) -> None:
        for placing in event.placings:
            [racer] = await self._members(uow, [placing.user_id])
            en = ko = ""
            if placing.rank is None:
                ko, en = "완주하지 못했어요.", "You did not finish."
            else:
                ko, en = f"{placing.rank}위로 완주했어요.", f"You finished #{placing.rank}."
                # Gun time ranks; the runner's own chip time (optional in the event: an
                # older publisher leaves it out) is what they ran.
                if placing.finish_s is not None and event.mode == "distance":
                    ko += f" 기록 {clock(placing.finish_s)}"
                    en += f" Gun time {clock(placing.finish_s)}"
                    if placing.chip_s is not None:
                        ko += f", 칩 기록 {clock(placing.chip_s)}"
                        en += f", chip time {clock(placing.chip_s)}"
                    ko, en = ko + ".", en + "."
            data = {"kind": "race_result", "race_id": str(event.race_id), "rank": str(placing.rank or "")}
            if placing.chip_s is not None:
                data["chip_s"] = f"{placing.chip_s:.1f}"
            notice = Notice("race_result", {"place": en if racer.locale == "en" else ko}, critical=False, data=data)
            await self._tell(uow, event.event_id, [racer], notice)

    async def steps_overtaken(self, event: StepRankChanged, uow: UnitOfWork) -> None:
        notice = Notice(
            "steps_overtaken",
            {"steps": f"{event.steps:,}", "rank": event.new_rank},
            critical=False,
            data={"kind": "steps_overtaken", "day": event.day.isoformat(), "by": str(event.overtaken_by)},
        )
        await self._tell(uow, event.event_id, await self._members(uow, [event.user_id]), notice)

    async def friend_accepted(self, event: FriendRequestAccepted, uow: UnitOfWork) -> None:
        notice = Notice(
            "friend_accepted",
            {},
            critical=False,
            data={"kind": "friend_accepted", "friend_id": str(event.friend_id)},
        )
        await self._tell(uow, event.event_id, await self._members(uow, [event.user_id]), notice)

    async def outing_invited(self, event: OutingInvited, uow: UnitOfWork) -> None:
        invitees = [user for user in event.invitees if user != event.host_id]
        notice = Notice(
            "outing_invited",
            {"title": event.title},
            critical=False,
            data={
                "kind": "outing_invited",
                "outing_id": str(event.outing_id),
                "host_id": str(event.host_id),
                # The dispatcher drops a push whose expires_at passed while it waited
                # (quiet hours): nobody is woken for an invitation they can no longer answer.
                "expires_at": event.expires_at.isoformat(),
            },
        )
        await self._tell(uow, event.event_id, await self._members(uow, invitees), notice)

    async def outing_started(self, event: OutingStarted, uow: UnitOfWork) -> None:
        joiners = [user for user in event.members if user != event.host_id]  # the host pressed start
        notice = Notice(
            "outing_started",
            {"title": event.title or "SmartGym"},
            critical=False,
            data={"kind": "outing_started", "outing_id": str(event.outing_id), "host_id": str(event.host_id)},
        )
        await self._tell(uow, event.event_id, await self._members(uow, joiners), notice)

    async def outing_ended(self, event: OutingEnded, uow: UnitOfWork) -> None:
        # Who ended it knows: the host who pressed end is not told, and when everyone left
        # nobody is (each left themselves). When time ran out, every member is told.
        if event.reason == "all_left":
            return
        told = [user for user in event.members if not (event.reason == "host_ended" and user == event.host_id)]
        notice = Notice(
            f"outing_ended_{event.reason}",
            {"title": event.title or "SmartGym"},
            critical=False,
            data={"kind": "outing_ended", "outing_id": str(event.outing_id), "reason": event.reason},
        )
        await self._tell(uow, event.event_id, await self._members(uow, told), notice)

    async def step_goal_reached(self, event: StepGoalReached, uow: UnitOfWork) -> None:
        notice = Notice(
            f"step_goal_reached_{event.period}",
            {"title": event.title, "steps": f"{event.steps:,}", "target": f"{event.target:,}"},
            critical=False,
            data={
                "kind": "step_goal_reached",
                "goal_id": str(event.goal_id),
                "period_start": event.period_start.isoformat(),
            },
        )
        await self._tell(uow, event.event_id, await self._members(uow, event.members), notice)
