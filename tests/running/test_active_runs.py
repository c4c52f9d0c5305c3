"""The runs streaming to a replica, looked up by member without a scan."""

from __future__ import annotations

import uuid

from running.live_points import ActiveRuns
from running.live_run import LiveRun
from running.track import LiveTrack


def a_run(user: uuid.UUID) -> LiveRun:
    return LiveRun(run_id=uuid.uuid4(), user_id=user, track=LiveTrack(started_at=0.0))


def test_a_members_runs_are_found_by_member_and_forgotten_when_they_go() -> None:
    ann, bob = uuid.uuid4(), uuid.uuid4()
    runs = ActiveRuns()
    first, second, others = a_run(ann), a_run(ann), a_run(bob)
    for live in (first, second, others):
        runs.add(live)

    assert {live.run_id for live in runs.of_member(ann)} == {first.run_id, second.run_id}
    assert runs.of_member(bob) == [others]
    assert len(runs) == 3
    assert set(runs) == {first.run_id, second.run_id, others.run_id}
    assert runs[first.run_id] is first
    assert runs.get(uuid.uuid4()) is None

    assert runs.pop(first.run_id) is first
    assert runs.pop(first.run_id) is None  # a second goodbye changes nothing
    assert runs.of_member(ann) == [second]
    runs.pop(second.run_id)
    assert runs.of_member(ann) == []
    assert list(runs) == [others.run_id]


def test_a_run_added_again_is_held_once() -> None:
    ann = uuid.uuid4()
    runs = ActiveRuns()
    live = a_run(ann)
    runs.add(live)
    runs.add(live)  # a reconnect resumes the same run id
    assert len(runs) == 1
    assert runs.of_member(ann) == [live]
