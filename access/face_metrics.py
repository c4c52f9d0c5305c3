"""The face cache's metrics: where recognised faces were found (the hit ratio the design
asks for), how misses were looked up, and how large the galleries are."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from common.observability import Metrics


class CacheMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.lookups = Counter(
            "access_face_cache_lookups",
            "Recognised faces by where they were found (hit: branch gallery; miss: cold store).",
            ["result"],
            registry=metrics.registry,
        )
        self.hit_ratio = Gauge(
            "access_face_cache_hit_ratio", "Share of recognised faces found in the gallery.", registry=metrics.registry
        )
        self.gallery_size = Gauge(
            "access_face_gallery_members", "Members in a branch's hot gallery.", ["branch"], registry=metrics.registry
        )
        self.miss_lookups = Counter(
            "access_face_miss_lookups",
            "Faces looked up past the branch gallery, by how (chain: facemodel's chain gallery; "
            "scan: the sealed store read and decrypted, while the chain gallery is not complete).",
            ["via"],
            registry=metrics.registry,
        )
        self.chain_size = Gauge(
            "access_face_chain_gallery_members", "Vectors in facemodel's chain gallery.", registry=metrics.registry
        )
        self.chain_ready = Gauge(
            "access_face_chain_gallery_ready",
            "1 while the chain gallery holds the whole store (misses are looked up there).",
            registry=metrics.registry,
        )
        self.hits = 0
        self.misses = 0

    def record(self, hit: bool) -> None:
        self.hits += hit
        self.misses += not hit
        self.lookups.labels("hit" if hit else "miss").inc()
        self.hit_ratio.set(self.hits / (self.hits + self.misses))
