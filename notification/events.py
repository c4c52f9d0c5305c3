"""Every event notification consumes, and who handles it."""

from __future__ import annotations

from common.events.bus import Subscriptions
from contracts import (
    AccessDenied,
    BranchPreferenceCreated,
    EquipmentFault,
    EquipmentFaultEscalated,
    EquipmentFaultWithdrawn,
    EquipmentRecovered,
    FriendRequestAccepted,
    OutingEnded,
    OutingInvited,
    OutingStarted,
    PasswordResetRequested,
    PasswordResetRequestedV2,
    RaceFinished,
    RunStarted,
    StepGoalReached,
    StepRankChanged,
    TaskConfirmed,
    TaskJudged,
    TaskReviewOverdue,
    UserDeleted,
    UserRegistered,
)
from notification.service import Notifier
from notification.social import SocialNotices


def subscriptions(notifier: Notifier) -> Subscriptions:
    subs = Subscriptions("notification")
    subs.add(UserRegistered, notifier.user_registered, name="welcome_new_user")
    subs.add(EquipmentFault, notifier.equipment_fault, name="equipment_fault")
    subs.add(EquipmentRecovered, notifier.equipment_recovered, name="equipment_recovered")
    subs.add(EquipmentFaultEscalated, notifier.equipment_escalated, name="equipment_escalated")
    subs.add(EquipmentFaultWithdrawn, notifier.equipment_withdrawn, name="equipment_withdrawn")
    subs.add(TaskJudged, notifier.task_judged, name="task_judged")
    subs.add(TaskConfirmed, notifier.task_confirmed, name="task_confirmed")
    subs.add(TaskReviewOverdue, notifier.task_review_overdue, name="task_review_overdue")
    subs.add(BranchPreferenceCreated, notifier.branch_preference, name="branch_preference")
    subs.add(AccessDenied, notifier.access_denied, name="gate_denials")
    subs.add(PasswordResetRequested, notifier.password_reset, name="password_reset")
    subs.add(PasswordResetRequestedV2, notifier.password_reset, name="password_reset_v2")
    social = SocialNotices(tell=notifier.tell)
    subs.add(RunStarted, social.friend_started_running, name="friend_running")
    subs.add(RaceFinished, social.race_finished, name="race_result")
    subs.add(StepRankChanged, social.steps_overtaken, name="steps_overtaken")
    subs.add(FriendRequestAccepted, social.friend_accepted, name="friend_accepted")
    subs.add(OutingInvited, social.outing_invited, name="outing_invited")
    subs.add(OutingStarted, social.outing_started, name="outing_started")
    subs.add(OutingEnded, social.outing_ended, name="outing_ended")
    subs.add(StepGoalReached, social.step_goal_reached, name="step_goal_reached")
    subs.add(UserDeleted, notifier.user_deleted, name="forget_deleted_user")
    return subs
