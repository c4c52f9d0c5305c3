"""mlops' settings: where packs live, how helper's data is read, when training starts, the
verification gates and the canary bound."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from common.settings import PlatformSettings


class MlopsSettings(PlatformSettings):
    mlops_pack_store: Literal["directory", "s3"] = Field(
        default="directory", description="Where model packs are kept: a directory (embedded mode) or S3 (production)."
    )
    mlops_pack_dir: Path | None = Field(
        default=None, description="The pack directory; unset: `model-packs` under the data directory."
    )
    mlops_s3_endpoint: str | None = Field(
        default=None, description="S3 endpoint URL of the pack bucket for S3-compatible stores; unset: AWS itself."
    )
    mlops_s3_bucket: str = Field(
        default="smartgym-model-packs", min_length=3, max_length=63, description="Bucket of the model packs."
    )
    mlops_s3_region: str = Field(default="ap-northeast-2", description="Region of the pack bucket.")
    mlops_s3_access_key_id: SecretStr | None = Field(
        default=None, description="S3 access key id for packs and photos; unset: the pod's role or default chain."
    )
    mlops_s3_secret_access_key: SecretStr | None = Field(default=None, description="S3 secret access key.")
    # Task photos are helper's: mlops reads them where helper keeps them, never writes.
    mlops_photo_store: Literal["directory", "s3"] = Field(
        default="directory", description="Where helper keeps task photos (read only by mlops)."
    )
    mlops_photo_dir: Path | None = Field(
        default=None, description="helper's photo directory; unset: `helper-photos` under the data directory."
    )
    mlops_photo_bucket: str = Field(
        default="smartgym-task-photos", min_length=3, max_length=63, description="Bucket of helper's task photos."
    )
    mlops_helper_read_url: str | None = Field(
        default=None,
        description=(
            "URL mlops reads helper's database with, as the read-only role; unset: helper's database URL with the "
            "user replaced by SMARTGYM_MLOPS_READER_ROLE (PostgreSQL) or opened read-only (SQLite)."
        ),
    )
    mlops_auth_read_url: str | None = Field(
        default=None, description="URL mlops reads auth's database with, as the read-only role; unset: as for helper."
    )
    mlops_reader_role: str = Field(
        default="smartgym_mlops_reader",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="The PostgreSQL role (SELECT only) that helper's and auth's migrations create for mlops.",
    )
    mlops_reader_password: SecretStr | None = Field(
        default=None,
        description="Password of the read-only role (the migrations set it from SMARTGYM_MLOPS_READER_PASSWORD).",
    )
    mlops_retrain_corrections: int = Field(
        default=100, ge=1, le=1_000_000, description="New owner corrections of the AI that queue a training run."
    )
    mlops_min_training_labels: int = Field(
        default=40, ge=4, description="Fewest labelled tasks a training run needs (train and held-out together)."
    )
    mlops_holdout_share: float = Field(
        default=0.3, gt=0, lt=1, description="Share of helpers (by a stable hash) whose tasks form the held-out set."
    )
    mlops_holdout_time_share: float = Field(
        default=0.3, gt=0, lt=1, description="Latest share of the labelled period the held-out set is taken from."
    )
    mlops_min_accuracy: float = Field(
        default=0.6, ge=0, le=1, description="Held-out accuracy a candidate needs when no model is deployed yet."
    )
    mlops_latency_budget_ms: float = Field(
        default=50.0, gt=0, description="Median single-photo inference time a candidate may take, in ms."
    )
    mlops_face_evaluation_dir: Path | None = Field(
        default=None,
        description="Genuine/impostor set for face packs: one directory per identity, photos with one face each.",
    )
    mlops_face_far: float = Field(
        default=1e-3, gt=0, lt=1, description="False-accept rate at which face packs are compared (TAR at FAR)."
    )
    mlops_face_min_tar: float = Field(
        default=0.9, ge=0, le=1, description="True-accept rate a face pack needs at that false-accept rate."
    )
    mlops_face_latency_budget_ms: float = Field(
        default=150.0, gt=0, description="Median time per face (detect, align, embed) a face pack may take, in ms."
    )
    mlops_canary_share: float = Field(
        default=0.25, gt=0, le=1, description="Share of instances a deployment reaches first (the canary)."
    )
    mlops_canary_min_samples: int = Field(
        default=50, ge=1, description="Samples the canary and the baseline each need before they are compared."
    )
    mlops_canary_max_worsening: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Bad-rate of the canary above the baseline's (absolute) that rolls a deployment back.",
    )
    mlops_training_queue: str = Field(
        default="mlops.training",
        pattern=r"^[a-z0-9][a-z0-9._-]{0,100}$",
        description="Quorum queue of training jobs, under the bus namespace.",
    )
    mlops_job_lease_s: float = Field(
        default=30.0, gt=0, le=3600, description="How long a worker's claim on a job lasts without a renewal."
    )
    mlops_embedded_worker: bool = Field(
        default=True,
        description="Without a broker (embedded mode), run training jobs inside the service, one at a time.",
    )
    mlops_worker_id: str | None = Field(
        default=None, max_length=120, description="This worker's name in the job table; unset: host and process id."
    )
    mlops_worker_step_pause_s: float = Field(
        default=0.0,
        ge=0,
        le=60,
        description="Pause between pipeline steps, in seconds (fault-injection tests and demos); 0 in production.",
    )
    mlops_code_version: str = Field(
        default="mlops-0.1.0", max_length=80, description="Code version recorded in every trained version's lineage."
    )

    @model_validator(mode="after")
    def _stores_configured(self) -> Self:
        if self.environment == "production" and self.mlops_pack_store != "s3" and not self.single_box:
            raise ValueError("production keeps model packs in S3: set SMARTGYM_MLOPS_PACK_STORE=s3")
        return self

    @property
    def pack_dir(self) -> Path:
        return self.mlops_pack_dir or self.data_dir / "model-packs"

    @property
    def photo_dir(self) -> Path:
        return self.mlops_photo_dir or self.data_dir / "helper-photos"
