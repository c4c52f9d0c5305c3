"""facemodel's settings beyond the platform's."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from common.modelsync import ModelInstanceSettings


class FacemodelSettings(ModelInstanceSettings):
    # The pack served at start-up; built by `smartgym facemodel build-pack` when missing.
    facemodel_pack: Path = Field(
        default=Path("var/models/yunet-sface-1.0.0"),
        description=(
            "The model pack served at start-up. `smartgym up` uses <data_dir>/models/yunet-sface-1.0.0 "
            "and builds it on first start; elsewhere build it with `smartgym facemodel build-pack`."
        ),
    )
    # Where access reaches us (same pod, shared emptyDir volume).
    facemodel_socket: Path = Field(
        default=Path("var/run/facemodel.sock"),
        description=(
            "Unix socket access reaches facemodel on (same pod, shared emptyDir; "
            "<data_dir>/run/facemodel.sock in `smartgym up`)."
        ),
    )
    facemodel_workers: int = Field(default=2, ge=1, le=32, description="Threads running inference.")
    facemodel_onnx_threads: int = Field(default=1, ge=1, le=16, description="onnxruntime intra-op threads per model.")
    # Camera frames and enrolment photos are bigger than JSON bodies.
    max_body_bytes: int = Field(
        default=15 * 1024 * 1024, ge=1024, description="Largest request body (camera frames and enrolment photos)."
    )
