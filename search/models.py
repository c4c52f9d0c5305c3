"""search's own tables: the source of truth the index is built from (the index itself
can always be rebuilt from them: ``smartgym search reindex``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import UtcDateTime, service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()


class Branch(Base):
    """A branch's latest profile (highest ``version`` seen)."""

    __tablename__ = "branches"

    branch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(120))
    address: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    open_24h: Mapped[bool] = mapped_column(Boolean)
    weekly_hours: Mapped[list[Any]] = mapped_column(JSON)
    facilities: Mapped[list[str]] = mapped_column(JSON)
    monthly_price_krw: Mapped[int | None] = mapped_column(Integer, nullable=True)
    day_pass_krw: Mapped[int | None] = mapped_column(Integer, nullable=True)
    photos_count: Mapped[int] = mapped_column(Integer)
    closed: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (Index("ix_reviews_branch_posted", "branch_id", "posted_at"),)

    review_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    branch_id: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    rating: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    # An edit is the same review with a higher revision.
    revision: Mapped[int] = mapped_column(Integer, server_default="1")
    posted_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ReviewStats(Base):
    """Running totals per branch (a review may arrive before its branch's profile)."""

    __tablename__ = "review_stats"

    branch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    rating_sum: Mapped[int] = mapped_column(Integer, default=0)
    review_count: Mapped[int] = mapped_column(Integer, default=0)


class BranchTopics(Base):
    """The owner's description of the members' tastes (BranchPreferenceCreated)."""

    __tablename__ = "branch_topics"

    branch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    topics: Mapped[list[str]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class BranchKeywords(Base):
    """What the cold path extracted from a branch's profile and reviews."""

    __tablename__ = "branch_keywords"

    branch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tags: Mapped[list[str]] = mapped_column(JSON)
    keywords: Mapped[list[str]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(16))  # llm | offline
    reviews_seen: Mapped[int] = mapped_column(Integer)
    extracted_at: Mapped[datetime] = mapped_column(UtcDateTime())


class EnrichmentDue(Base):
    """Branches whose keywords are stale, waiting for the cold path."""

    __tablename__ = "enrichment_due"

    branch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class LlmUsage(Base):
    """Tokens spent with the LLM partner per UTC day (the daily budget)."""

    __tablename__ = "llm_usage"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    calls: Mapped[int] = mapped_column(Integer, default=0)


class Visit(Base):
    """How often a member entered a branch (AccessGranted), for recommendations."""

    __tablename__ = "visits"

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    branch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    visits: Mapped[int] = mapped_column(Integer, default=0)
    last_at: Mapped[datetime] = mapped_column(UtcDateTime())
