"""facemodel's settings beyond the platform's."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from common.settings import PlatformSettings


class FacemodelSettings(PlatformSettings):
    # The pack served at start-up; built by `smartgym facemodel build-pack` when missing.
    facemodel_pack: Path = Path("var/models/yunet-sface-1.0.0")
    # Where access reaches us (same pod, shared emptyDir volume).
    facemodel_socket: Path = Path("var/run/facemodel.sock")
    facemodel_workers: int = Field(default=2, ge=1, le=32)
    facemodel_onnx_threads: int = Field(default=1, ge=1, le=16)
    # Camera frames and enrolment photos are bigger than JSON bodies.
    max_body_bytes: int = Field(default=15 * 1024 * 1024, ge=1024)
