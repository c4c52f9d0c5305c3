"""The one interface every search engine implements, and the documents it holds.

A backend only retrieves: text relevance (BM25 with field boosts and fuzzy terms) under
hard filters. Ranking by distance and quality, "open now" and the explanations happen
above it (:mod:`search.ranking`), the same for every backend, so swapping the engine
does not change what a member sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

# Field boosts: a word in the name says more than one in a review.
BOOSTS = {"name": 3.0, "tags": 2.0, "description": 1.0, "reviews": 0.6}


@dataclass
class BranchDoc:
    branch_id: str
    version: int
    name: str
    address: str
    description: str
    lat: float
    lon: float
    open_24h: bool
    weekly_hours: list[tuple[int, str, str]]
    facilities: list[str]
    # Review attributes and owners' topics ("quiet", "crossfit"), and free keywords from
    # the cold path's extractor.
    tags: list[str]
    keywords: list[str]
    monthly_price_krw: int | None
    day_pass_krw: int | None
    rating_avg: float
    review_count: int
    photos_count: int
    review_sample: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BranchDoc:
        data = dict(data)
        data["weekly_hours"] = [tuple(item) for item in data.get("weekly_hours", [])]
        return cls(**data)


@dataclass(frozen=True)
class GeoFilter:
    lat: float
    lon: float
    radius_m: float


@dataclass
class SearchRequest:
    # Index terms (already analysed); empty: filters alone.
    terms: list[str]
    # Words as typed, for engines that highlight themselves.
    words: list[str] = field(default_factory=list)
    facilities: list[str] = field(default_factory=list)  # every one required
    tags: list[str] = field(default_factory=list)  # boosts
    open_24h: bool = False
    price_max_krw: int | None = None
    rating_min: float | None = None
    geo: GeoFilter | None = None
    exclude: list[str] = field(default_factory=list)  # branch ids
    limit: int = 200


@dataclass
class Candidate:
    doc: BranchDoc
    text_score: float
    highlights: dict[str, list[str]] = field(default_factory=dict)


class SearchBackend(Protocol):
    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def upsert(self, docs: Sequence[BranchDoc]) -> None:
        """Add or replace documents by branch id; visible to searches when it returns."""

    async def delete(self, branch_ids: Sequence[str]) -> None: ...

    async def rebuild(self, docs: Sequence[BranchDoc]) -> int:
        """Replace the whole index with ``docs`` without a moment where searches see an
        empty or half-built index; returns the documents indexed."""

    async def search(self, request: SearchRequest) -> list[Candidate]: ...

    async def get(self, branch_ids: Sequence[str]) -> dict[str, BranchDoc]: ...

    async def count(self) -> int: ...

    async def all_docs(self) -> list[BranchDoc]:
        """Every document (the replica's catalogue for suggestions and recommendations)."""
