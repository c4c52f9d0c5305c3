"""search's request and response models."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from search.lexicon import lexicon
from search.text import has_control_characters

MAX_QUERY_CHARS = 200


def clean_query(value: str) -> str:
    if has_control_characters(value):
        raise ValueError("the query contains control characters")
    value = " ".join(value.split())
    if len(value) > MAX_QUERY_CHARS:
        raise ValueError(f"the query is longer than {MAX_QUERY_CHARS} characters")
    return value


class Filters(BaseModel):
    """Filters a client may set explicitly (besides what the query text says)."""

    model_config = ConfigDict(extra="forbid")

    facilities: list[str] = Field(default_factory=list, max_length=14)
    open_24h: bool = False
    open_now: bool = False
    price_max_krw: int | None = Field(default=None, ge=0, le=10_000_000)
    rating_min: float | None = Field(default=None, ge=1, le=5)
    radius_m: float | None = Field(default=None, gt=0, le=50_000)

    @field_validator("facilities")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        known = lexicon().facilities
        unknown = [item for item in value if item not in known]
        if unknown:
            raise ValueError(f"unknown facilities {unknown}; known: {sorted(known)}")
        return list(dict.fromkeys(value))


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: str = Field(default="", max_length=10_000)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    filters: Filters = Field(default_factory=Filters)
    page: int = Field(default=1, ge=1, le=50)
    size: int = Field(default=10, ge=1, le=50)

    @field_validator("q")
    @classmethod
    def _clean(cls, value: str) -> str:
        return clean_query(value)

    @model_validator(mode="after")
    def _something_to_search(self) -> SearchIn:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon, or neither")
        if not self.q and self.filters == Filters() and self.lat is None:
            raise ValueError("empty search: give a query, filters or a location")
        return self


class Interpretation(BaseModel):
    place: str | None
    place_id: str | None
    near_me: bool
    facilities: list[str]
    attributes: list[str]
    avoid: list[str]
    open_24h: bool
    open_now: bool
    price_max_krw: int | None
    rating_min: float | None
    words: list[str]
    corrections: dict[str, str]


class Why(BaseModel):
    facilities: list[str]
    tags: list[str]
    place: str | None
    distance_m: int | None
    open_24h: bool
    open_now: bool | None
    highlights: dict[str, list[str]]


class SearchHit(BaseModel):
    branch_id: str
    name: str
    address: str
    lat: float
    lon: float
    rating: float
    review_count: int
    monthly_price_krw: int | None
    facilities: list[str]
    tags: list[str]
    score: float
    why: Why


class SearchPage(BaseModel):
    query: str
    interpretation: Interpretation
    relaxed: list[str]
    notes: list[str]
    total: int
    page: int
    size: int
    hits: list[SearchHit]
    backend: str
    took_ms: float


class SuggestionOut(BaseModel):
    text: str
    kind: str
    branch_id: str | None


class Suggestions(BaseModel):
    prefix: str
    suggestions: list[SuggestionOut]


class ReviewOut(BaseModel):
    review_id: uuid.UUID
    rating: int
    text: str
    posted_at: datetime


class ReviewsPage(BaseModel):
    reviews: list[ReviewOut]
    next_before: datetime | None


class BranchDetail(BaseModel):
    branch_id: str
    name: str
    address: str
    description: str
    lat: float
    lon: float
    open_24h: bool
    weekly_hours: list[tuple[int, str, str]]
    open_now: bool | None
    facilities: list[str]
    tags: list[str]
    keywords: list[str]
    monthly_price_krw: int | None
    day_pass_krw: int | None
    photos_count: int
    rating: float
    review_count: int
    reviews: list[ReviewOut]


class Recommendation(BaseModel):
    branch_id: str
    name: str
    address: str
    score: float
    distance_m: int | None
    shared: list[str]
    reason: str


class Recommendations(BaseModel):
    basis: str
    items: list[Recommendation]


class ReindexOut(BaseModel):
    documents: int
    backend: str
