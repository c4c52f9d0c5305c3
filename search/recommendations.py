"""Recommendations: "branches like this one" (shared facilities and tags, nearby,
well rated) and "for you" (from the branches a member actually enters)."""

from __future__ import annotations

import math

from search.backends.base import BranchDoc
from search.catalogue import Catalogue
from search.ranking import distance_m, quality
from search.schemas import Recommendation

# Beyond this a branch is "elsewhere" for a member, however alike.
DISTANCE_SCALE_M = 5_000.0


def _features(doc: BranchDoc) -> set[str]:
    return {f"facility:{item}" for item in doc.facilities} | {f"tag:{item}" for item in doc.tags}


def _label(feature: str) -> str:
    return feature.split(":", 1)[1]


def similar(catalogue: Catalogue, *, branch_id: str, limit: int) -> list[Recommendation] | None:
    """Branches like ``branch_id``; None when it is unknown."""
    source = catalogue.docs.get(branch_id)
    if source is None:
        return None
    wanted = _features(source)
    scored: list[tuple[float, BranchDoc, list[str], float]] = []
    for doc in catalogue.docs.values():
        if doc.branch_id == branch_id:
            continue
        features = _features(doc)
        shared = wanted & features
        jaccard = len(shared) / len(wanted | features) if wanted | features else 0.0
        distance = distance_m(source.lat, source.lon, doc.lat, doc.lon)
        near = math.exp(-distance / DISTANCE_SCALE_M)
        score = 0.5 * jaccard + 0.3 * near + 0.2 * quality(doc)
        scored.append((score, doc, sorted(_label(item) for item in shared), distance))
    scored.sort(key=lambda item: (-item[0], item[1].branch_id))
    return [
        Recommendation(
            branch_id=doc.branch_id,
            name=doc.name,
            address=doc.address,
            score=round(score, 4),
            distance_m=round(distance),
            shared=shared,
            reason=f"shares {len(shared)} facilities and tags with {source.name}, {distance / 1000:.1f} km away",
        )
        for score, doc, shared, distance in scored[:limit]
    ]


def for_member(catalogue: Catalogue, *, visits: dict[str, int], limit: int) -> list[Recommendation]:
    """Branches a member has not been to, like the ones they go to most, near where
    they go. Without visits: the best-rated branches."""
    visited = [(catalogue.docs[branch_id], count) for branch_id, count in visits.items() if branch_id in catalogue.docs]
    if not visited:
        best = sorted(catalogue.docs.values(), key=lambda doc: (-quality(doc), doc.branch_id))[:limit]
        return [
            Recommendation(
                branch_id=doc.branch_id,
                name=doc.name,
                address=doc.address,
                score=round(quality(doc), 4),
                distance_m=None,
                shared=[],
                reason="well rated by members",
            )
            for doc in best
        ]
    profile: dict[str, float] = {}
    total = float(sum(count for _doc, count in visited))
    lat = sum(doc.lat * count for doc, count in visited) / total
    lon = sum(doc.lon * count for doc, count in visited) / total
    for doc, count in visited:
        for feature in _features(doc):
            profile[feature] = profile.get(feature, 0.0) + count / total
    norm = sum(profile.values()) or 1.0
    scored: list[tuple[float, BranchDoc, list[str], float]] = []
    for doc in catalogue.docs.values():
        if doc.branch_id in visits:
            continue
        features = _features(doc)
        affinity = sum(profile.get(feature, 0.0) for feature in features) / norm
        distance = distance_m(lat, lon, doc.lat, doc.lon)
        # Members train where they live or work: distance weighs more than for "similar".
        score = 0.4 * affinity + 0.45 * math.exp(-distance / DISTANCE_SCALE_M) + 0.15 * quality(doc)
        shared = sorted(_label(feature) for feature in features if profile.get(feature, 0.0) >= 0.5)
        scored.append((score, doc, shared, distance))
    scored.sort(key=lambda item: (-item[0], item[1].branch_id))
    return [
        Recommendation(
            branch_id=doc.branch_id,
            name=doc.name,
            address=doc.address,
            score=round(score, 4),
            distance_m=round(distance),
            shared=shared,
            reason="like the branches you visit" + (f" ({', '.join(shared[:3])})" if shared else ""),
        )
        for score, doc, shared, distance in scored[:limit]
    ]
