"""running's own tables."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, Float, Index, Integer, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import BigIntPK, UtcDateTime, service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_user_started", "user_id", "started_at"),
        Index("ux_runs_user_fingerprint", "user_id", "fingerprint", unique=True),
        Index("ix_runs_status_updated", "status", "updated_at"),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    status: Mapped[str] = mapped_column(String(16))  # live | finished
    source: Mapped[str] = mapped_column(String(8))  # live | gpx
    title: Mapped[str] = mapped_column(String(120))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    distance_m: Mapped[float] = mapped_column(Float, default=0.0)
    moving_s: Mapped[float] = mapped_column(Float, default=0.0)
    elapsed_s: Mapped[float] = mapped_column(Float, default=0.0)
    race_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    # Splits, pace chart, elevation, heart-rate zones: computed once at the finish.
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The filtered track, [t, lat, lon] per kept point, also kept from the finish (None
    # while the run is live): a run's page must not re-filter the whole run each time.
    track: Mapped[list[list[float]] | None] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # What the live filter refused, by reason: refused points are not stored, so a replay
    # at the finish cannot count them again.
    refused: Mapped[dict[str, int] | None] = mapped_column(JSON, nullable=True)
    # Laps and pauses the runner marked: [{"t", "distance_m", "moving_s"}], [[from_t, to_t]].
    laps: Mapped[list[dict[str, float]] | None] = mapped_column(JSON, nullable=True)
    pauses: Mapped[list[list[float | None]] | None] = mapped_column(JSON, nullable=True)
    # An imported file's identity (its first and last second): the same file twice is one run.
    fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # A structured workout followed live: its steps with targets and what was done.
    workout: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    shoe_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)


class RunChunk(Base):
    """A few seconds of one run's raw points: one row per run per flush, not per point.
    Each point is ``[t, lat, lon, acc, alt, hr]``."""

    __tablename__ = "run_chunks"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    first_t: Mapped[float] = mapped_column(Float)
    points: Mapped[list[list[float | None]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class Friendship(Base):
    """``user_id`` → ``friend_id``; accepted friendships are stored both ways."""

    __tablename__ = "friendships"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    friend_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, index=True)
    status: Mapped[str] = mapped_column(String(16))  # requested | accepted
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class FriendCodeMiss(Base):
    """Codes a member typed that matched nobody, per day: past a few, guessing stops."""

    __tablename__ = "friend_code_misses"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    misses: Mapped[int] = mapped_column(Integer)


class ShareLink(Base):
    __tablename__ = "share_links"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    created_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Race(Base):
    __tablename__ = "races"

    race_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    host_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    title: Mapped[str] = mapped_column(String(120))
    mode: Mapped[str] = mapped_column(String(8))  # distance | time
    target: Mapped[float] = mapped_column(Float)  # metres or seconds
    status: Mapped[str] = mapped_column(String(16), index=True)  # open | running | finished
    start_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class RaceEntry(Base):
    __tablename__ = "race_entries"

    race_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, index=True)
    status: Mapped[str] = mapped_column(String(16))  # invited | joined | finished
    run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    distance_m: Mapped[float] = mapped_column(Float, default=0.0)
    # Gun time: from the race's start to the finish (what ranks a distance race).
    finish_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Chip time: from the racer's own first point after the start to the finish.
    chip_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    rank: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Outing(Base):
    """A walk or run together: a small group sharing locations until it ends."""

    __tablename__ = "outings"

    outing_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    title: Mapped[str] = mapped_column(String(120))
    members: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # open | closed
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Each member's answer: invited | accepted | declined | left (the host starts accepted).
    invites: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    invite_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class StepCount(Base):
    """Steps of one day from one phone or watch (a re-upload replaces the count)."""

    __tablename__ = "step_counts"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    steps: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class RunnerProfile(Base):
    """What a runner told us about themselves: the name others see on boards, and the
    heart rates their zones are computed from."""

    __tablename__ = "runner_profiles"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(40), nullable=True)
    max_hr: Mapped[int | None] = mapped_column(Integer, nullable=True)
    resting_hr: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Runners nearby: off unless the runner opts in; never shown inside a privacy zone.
    nearby_opt_in: Mapped[bool] = mapped_column(default=False)
    privacy_zones: Mapped[list[dict[str, float]] | None] = mapped_column(JSON, nullable=True)
    # What a friend types to find this runner: random, so that knowing one says nothing
    # about anyone else's; issued on first ask, replaced on request.
    friend_code: Mapped[str | None] = mapped_column(String(10), nullable=True, unique=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class StepGoal(Base):
    """A group's shared step target per day or week."""

    __tablename__ = "step_goals"

    goal_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    title: Mapped[str] = mapped_column(String(120))
    period: Mapped[str] = mapped_column(String(8))  # day | week
    target: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class StepGoalMember(Base):
    __tablename__ = "step_goal_members"

    goal_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, index=True)


class StepGoalReachedMark(Base):
    """A goal reached in one period: the event goes out once, however many uploads follow."""

    __tablename__ = "step_goal_reached"

    goal_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    period_start: Mapped[date] = mapped_column(Date, primary_key=True)
    reached_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Workout(Base):
    """A structured workout a member planned: steps with targets (repeats expanded)."""

    __tablename__ = "workouts"

    workout_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    title: Mapped[str] = mapped_column(String(120))
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Shoe(Base):
    """A pair of running shoes and when the runner means to retire them."""

    __tablename__ = "shoes"

    shoe_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    name: Mapped[str] = mapped_column(String(80))
    retire_at_km: Mapped[float] = mapped_column(Float, default=700.0)
    retired: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class StravaLink(Base):
    """A member's Strava connection (OAuth2 tokens; Strava rotates the refresh token)."""

    __tablename__ = "strava_links"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    athlete_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    access_token: Mapped[str] = mapped_column(String(200))
    refresh_token: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class StravaUpload(Base):
    """A run sent to Strava: the upload and, once processed, the activity it became."""

    __tablename__ = "strava_uploads"

    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    upload_id: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(200))
    activity_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(String(300), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class CoachUsage(Base):
    """What the coach's partner was asked per UTC day, for the whole installation: one row
    per member (their questions) and one with ``scope`` ``*`` (everyone's tokens). Every
    replica counts here, so the budget is the installation's, not each replica's."""

    __tablename__ = "coach_usage"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    scope: Mapped[str] = mapped_column(String(40), primary_key=True)  # a member id, or "*"
    questions: Mapped[int] = mapped_column(Integer, default=0)
    tokens: Mapped[int] = mapped_column(Integer, default=0)
