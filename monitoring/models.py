"""monitoring's own tables: the equipment registry, faults and the audit of every change."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import BigIntPK, UtcDateTime, service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()


class Equipment(Base):
    """One registered device and its last known health."""

    __tablename__ = "equipment"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    branch_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(120))
    address: Mapped[str] = mapped_column(String(200))
    ping_url: Mapped[str | None] = mapped_column(String(300), nullable=True)
    heartbeat_period_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    criticality: Mapped[str] = mapped_column(String(16))
    # SHA-256 of a 256-bit random token: a slow password hash buys nothing for a secret
    # this long, and thousands of devices reconnect at once after a network blip.
    token_hash: Mapped[str] = mapped_column(String(64))
    health: Mapped[str] = mapped_column(String(16))
    health_reason: Mapped[str] = mapped_column(String(200))
    health_since: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class MaintenanceWindow(Base):
    """While a window is open the device's faults are tracked but not announced."""

    __tablename__ = "maintenance_windows"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime())
    reason: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(80))


class Fault(Base):
    """One announced outage of one device, from detection to recovery."""

    __tablename__ = "faults"
    __table_args__ = (Index("ix_faults_open", "closed_at", "branch_id"),)

    fault_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    branch_id: Mapped[str] = mapped_column(String(64))
    criticality: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(200))
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(80), nullable=True)
    escalated_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class StateChange(Base):
    """Every health change of every device, announced or not (append-only)."""

    __tablename__ = "state_changes"
    __table_args__ = (Index("ix_state_changes_device_at", "device_id", "at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64))
    branch_id: Mapped[str] = mapped_column(String(64), index=True)
    from_health: Mapped[str] = mapped_column(String(16))
    to_health: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    announced: Mapped[bool] = mapped_column(Boolean)
    fault_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)


class ShardLease(Base):
    """Which replica watches the branches of one shard, and until when (database time).

    Used only when devices are sharded over several replicas: a lease that is not renewed
    expires, and another replica takes the shard."""

    __tablename__ = "shard_leases"

    shard: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    holder: Mapped[str | None] = mapped_column(String(80), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Replica(Base):
    """A live monitoring replica (renewed with its leases): how many share the shards."""

    __tablename__ = "replicas"

    replica_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
