"""running's settings: the live socket, input limits, persistence and retention."""

from __future__ import annotations

from pydantic import Field

from common.settings import PlatformSettings


class RunningSettings(PlatformSettings):
    # Live sockets are served by the `websockets` library on their own port: it delivers
    # several times more messages per CPU-second than an ASGI stack (docs/adr).
    running_live_host: str = "0.0.0.0"  # noqa: S104 - a container's listener
    running_live_port: int = Field(default=8020, ge=0, le=65535)
    running_replica: str = Field(default="", max_length=64, description="defaults to host:pid")
    # A phone sends a point a second; a burst after a tunnel comes as one batch frame.
    running_frames_per_s: float = Field(default=5.0, gt=0, le=100)
    running_frame_burst: int = Field(default=30, ge=1, le=1000)
    running_max_batch: int = Field(default=600, ge=1, le=5000)
    running_max_bad_frames: int = Field(default=20, ge=1, le=1000)
    running_reorder_window_s: float = Field(default=60.0, ge=0, le=600)
    running_max_future_s: float = Field(default=30.0, ge=0, le=600)
    running_flush_interval_s: float = Field(default=5.0, gt=0, le=60)
    running_point_retention_days: int = Field(default=730, ge=1)
    running_share_max_hours: int = Field(default=24, ge=1, le=24 * 14)
    running_race_countdown_s: float = Field(default=5.0, ge=0, le=600)
    running_stats_interval_s: float = Field(default=1.0, ge=0, le=60)
    running_watchers_per_run: int = Field(default=500, ge=1, le=100_000)
