"""Every event helper consumes, and who handles it."""

from __future__ import annotations

from common.events.bus import Subscriptions
from contracts import TaskConfirmed, TaskSubmitted
from helper.deploys import OverrideSignal
from helper.judge import TaskJudge
from helper.ledger import Ledger


def subscriptions(judge: TaskJudge, ledger: Ledger, signal: OverrideSignal) -> Subscriptions:
    subs = Subscriptions("helper")
    subs.add(TaskSubmitted, judge.task_submitted, name="task_judge")
    subs.add(TaskConfirmed, ledger.task_confirmed, name="reward_ledger")
    subs.add(TaskConfirmed, signal.task_confirmed, name="model_signal")
    return subs
