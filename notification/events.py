"""Every event notification consumes, and who handles it."""

from __future__ import annotations

from common.events.bus import Subscriptions
from contracts import (
    AccessDenied,
    BranchPreferenceCreated,
    EquipmentFault,
    EquipmentFaultEscalated,
    EquipmentRecovered,
    PasswordResetRequested,
    PasswordResetRequestedV2,
    RaceFinished,
    RunStarted,
    StepRankChanged,
    TaskConfirmed,
    TaskJudged,
    TaskReviewOverdue,
    UserDeleted,
    UserRegistered,
)
from notification.service import Notifier


def subscriptions(notifier: Notifier) -> Subscriptions:
    subs = Subscriptions("notification")
    subs.add(UserRegistered, notifier.user_registered, name="welcome_new_user")
    subs.add(EquipmentFault, notifier.equipment_fault, name="equipment_fault")
    subs.add(EquipmentRecovered, notifier.equipment_recovered, name="equipment_recovered")
    subs.add(EquipmentFaultEscalated, notifier.equipment_escalated, name="equipment_escalated")
    subs.add(TaskJudged, notifier.task_judged, name="task_judged")
    subs.add(TaskConfirmed, notifier.task_confirmed, name="task_confirmed")
    subs.add(TaskReviewOverdue, notifier.task_review_overdue, name="task_review_overdue")
    subs.add(BranchPreferenceCreated, notifier.branch_preference, name="branch_preference")
    subs.add(AccessDenied, notifier.access_denied, name="gate_denials")
    subs.add(PasswordResetRequested, notifier.password_reset, name="password_reset")
    subs.add(PasswordResetRequestedV2, notifier.password_reset, name="password_reset_v2")
    subs.add(RunStarted, notifier.friend_started_running, name="friend_running")
    subs.add(RaceFinished, notifier.race_finished, name="race_result")
    subs.add(StepRankChanged, notifier.steps_overtaken, name="steps_overtaken")
    subs.add(UserDeleted, notifier.user_deleted, name="forget_deleted_user")
    return subs
