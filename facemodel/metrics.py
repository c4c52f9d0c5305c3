"""facemodel's own metrics, in the process registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64)


class FaceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.stage_seconds = Histogram(
            "smartgym_facemodel_stage_seconds",
            "Pipeline stage latency.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self.active_model = Gauge(
            "smartgym_facemodel_active_model",
            "1 for the model version serving now.",
            ["model"],
            registry=registry,
        )
        self.swaps = Counter("smartgym_facemodel_swaps_total", "Model swaps and rollbacks.", registry=registry)
        self.gallery_size = Gauge(
            "smartgym_facemodel_gallery_vectors",
            "Vectors per gallery.",
            ["gallery"],
            registry=registry,
        )
        self.outcomes = Counter(
            "smartgym_facemodel_analyses_total",
            "Analyses by quality outcome.",
            ["outcome"],
            registry=registry,
        )
