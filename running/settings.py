"""running's settings: the live socket, input limits, persistence and retention."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator

from common.settings import PlatformSettings


class RunningSettings(PlatformSettings):
    # Live sockets are served by the `websockets` library on their own port: it delivers
    # several times more messages per CPU-second than an ASGI stack (docs/adr).
    running_live_host: str = Field(
        default="0.0.0.0",  # noqa: S104 - a container's listener
        description="Address the live-run WebSocket server binds.",
    )
    running_live_port: int = Field(
        default=8020,
        ge=0,
        le=65535,
        description="Port of the live-run WebSocket server (served by `websockets`, not ASGI).",
    )
    running_replica: str = Field(default="", max_length=64, description="defaults to host:pid")
    # A phone sends a point a second; a burst after a tunnel comes as one batch frame.
    running_frames_per_s: float = Field(
        default=5.0, gt=0, le=100, description="Frames a phone may send per second (sustained)."
    )
    running_frame_burst: int = Field(default=30, ge=1, le=1000, description="Frames a phone may send in a burst.")
    running_max_batch: int = Field(
        default=600, ge=1, le=5000, description="Most points in one batch frame (sent after a tunnel)."
    )
    running_max_bad_frames: int = Field(
        default=20, ge=1, le=1000, description="Bad frames tolerated before the socket is closed."
    )
    running_reorder_window_s: float = Field(
        default=60.0,
        ge=0,
        le=600,
        description="Late points within this many seconds are put back in order; older ones are dropped.",
    )
    running_max_future_s: float = Field(
        default=30.0, ge=0, le=3600, description="Points stamped further ahead than this are refused."
    )
    running_flush_interval_s: float = Field(
        default=5.0, gt=0, le=60, description="Seconds between writes of buffered points to the database."
    )
    running_point_retention_days: int = Field(default=730, ge=1, description="Days raw points are kept.")
    running_share_max_hours: int = Field(
        default=24, ge=1, le=24 * 14, description="Longest lifetime of a shared watch link, hours."
    )
    running_race_countdown_s: float = Field(
        default=5.0, ge=0, le=600, description="Countdown before a race starts, seconds."
    )
    running_fanout_window_s: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description=(
            "Longest wait, seconds, of a live message for another replica while a batch for "
            "it fills; a batch leaves at once after a quiet spell, or when it holds 128 messages."
        ),
    )
    running_stats_interval_s: float = Field(
        default=1.0, ge=0, le=60, description="Seconds between live stats frames to a runner."
    )
    # Only a socket quiet both ways, or whose writes stay queued, for an interval is pinged
    # (running.live_keepalive); a dead one with data in flight is ended by its TCP after
    # interval + timeout.
    running_live_ping_interval_s: float = Field(
        default=20.0,
        ge=0.05,
        le=600,
        description="Seconds a live socket may be quiet both ways before it is pinged.",
    )
    running_live_ping_timeout_s: float = Field(
        default=20.0,
        ge=0.05,
        le=600,
        description=(
            "Seconds a live socket's pong may take before the socket is closed (1011); also, with "
            "the interval, how long its unacknowledged data may wait (TCP_USER_TIMEOUT)."
        ),
    )
    running_watchers_per_run: int = Field(default=500, ge=1, le=100_000, description="Most watchers of one run.")
    # A live run nobody streamed to for this long (socket gone, no reconnect) is finished
    # with what it recorded.
    running_abandon_after_s: float = Field(
        default=900.0, ge=1, le=86_400, description="A live run nobody streams to for this long is finished, seconds."
    )
    # The import route takes a marathon's 1 s samples in any format (TCX is the wordiest,
    # ~400 bytes a point); the gateway keeps every other running route at its 1 MiB.
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Largest request body (run files up to a marathon)."
    )
    running_outing_snapshot_s: float = Field(
        default=3.0, gt=0, le=60, description="Seconds between group position snapshots in an outing."
    )
    running_outing_invite_s: float = Field(
        default=1800.0, ge=1, le=86_400, description="How long an outing invitation can be answered, seconds."
    )
    # Strava (https://www.strava.com): off unless a client id and secret are set.
    running_strava_url: str = Field(default="https://www.strava.com", description="Strava's base URL.")
    running_strava_client_id: str = Field(default="", description="Strava API client id (empty: Strava off).")
    running_strava_client_secret: SecretStr | None = Field(default=None, description="Strava API client secret.")
    running_strava_wait_s: float = Field(
        default=10.0, ge=0, le=120, description="How long an upload is polled before answering, seconds."
    )
    running_strava_backoff_s: float = Field(
        default=0.5, gt=0, le=60, description="First backoff after a 429/5xx from Strava, seconds (doubles, jittered)."
    )
    # The coach's LLM partner (OpenAI-compatible chat completions): rules only when unset.
    running_coach_url: str = Field(default="", description="OpenAI-compatible base URL of the coach's partner.")
    running_coach_api_key: SecretStr | None = Field(default=None, description="API key of the coach's partner.")
    running_coach_model: str = Field(default="gpt-4o-mini", description="Model name sent to the partner.")
    running_coach_tokens_per_day: int = Field(
        default=200_000,
        ge=0,
        description="Partner tokens the coach may use per UTC day (the whole installation, all replicas).",
    )
    running_coach_questions_per_member: int = Field(
        default=20, ge=0, description="Questions a member may ask the partner per UTC day."
    )
    running_coach_timeout_s: float = Field(default=20.0, gt=0, le=120, description="Partner request timeout, seconds.")

    @model_validator(mode="after")
    def _strong_sealing_secret_in_production(self) -> Self:
        # Strava tokens are sealed under the key-encryption secret (running.sealing).
        problems = self.key_encryption_problems() if self.environment == "production" else []
        if problems:
            raise ValueError("unsafe production settings: " + "; ".join(problems))
        return self
