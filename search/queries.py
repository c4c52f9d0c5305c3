"""The hot path: a member's query in, ranked branches with reasons out. No LLM and no
outbound call here: the parser is rules over a lexicon, the engine is local or the
search cluster, ranking is arithmetic."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from search.backends.base import GeoFilter, SearchBackend, SearchRequest
from search.catalogue import Catalogue
from search.intent import CHEAP_MONTHLY_KRW, TOP_RATED_MIN, ParsedQuery, parse
from search.ranking import highlight_terms, highlights, is_open, rank
from search.schemas import Filters, Interpretation, SearchHit, SearchPage, Why
from search.settings import SearchSettings
from search.text import analyze_query_words, normalize, words

MAX_CANDIDATES = 500


@dataclass
class SearchContext:
    """What the hot path needs, built once per app."""

    backend: SearchBackend
    catalogue: Catalogue
    settings: SearchSettings
    # Set once models and catalogue are loaded (always set when built outside the app).
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    zone: ZoneInfo = field(init=False)

    def __post_init__(self) -> None:
        self.zone = ZoneInfo(self.settings.search_timezone)

    async def wait_ready(self) -> None:
        await self.ready.wait()


def _correct(parsed: ParsedQuery, catalogue: Catalogue) -> list[str]:
    """Free words nobody indexed are replaced by the closest indexed word, or dropped
    (returned) when nothing is close: an unknown word must not empty the results."""
    if not parsed.free_words:
        return []
    forms: list[str] = []
    ignored: list[str] = []
    for surface in parsed.free_words:
        for word in words(normalize(surface)):
            if catalogue.knows_any(analyze_query_words([word.form])):
                forms.append(word.form)
                continue
            fixed = catalogue.correct(word.form)
            if fixed is not None:
                parsed.corrections[surface] = fixed
                forms.append(fixed)
            else:
                ignored.append(word.form)
    parsed.terms = analyze_query_words(forms)
    return ignored


async def search(
    context: SearchContext,
    *,
    query: str,
    filters: Filters,
    origin: tuple[float, float] | None,
    page: int,
    size: int,
    now: datetime,
) -> SearchPage:
    started = time.perf_counter()
    settings = context.settings
    parsed = parse(query) if query else ParsedQuery(text="")
    ignored = _correct(parsed, context.catalogue)
    notes: list[str] = [f"no branch mentions {', '.join(ignored)}: searched without"] if ignored else []
    facilities = list(dict.fromkeys([*parsed.facilities, *filters.facilities]))
    open_24h = parsed.open_24h or filters.open_24h
    open_now = parsed.open_now or filters.open_now
    price_max = filters.price_max_krw if filters.price_max_krw is not None else parsed.price_max_krw
    if price_max is None and parsed.cheap:
        price_max = CHEAP_MONTHLY_KRW
    rating_min = filters.rating_min if filters.rating_min is not None else parsed.rating_min
    if rating_min is None and parsed.top_rated:
        rating_min = TOP_RATED_MIN

    geo: GeoFilter | None = None
    centre: tuple[float, float] | None = origin
    if parsed.place is not None:
        radius = (
            settings.search_station_radius_m if parsed.place.kind == "station" else settings.search_district_radius_m
        )
        centre = (parsed.place.lat, parsed.place.lon)
        geo = GeoFilter(parsed.place.lat, parsed.place.lon, filters.radius_m or radius)
    elif origin is not None and (parsed.near_me or filters.radius_m is not None):
        geo = GeoFilter(origin[0], origin[1], filters.radius_m or settings.search_near_me_radius_m)
    elif parsed.near_me:
        notes.append("the query asks for branches near you: send lat and lon to search around you")

    request = SearchRequest(
        terms=parsed.terms,
        words=parsed.free_words,
        facilities=facilities,
        tags=parsed.attributes,
        open_24h=open_24h,
        price_max_krw=price_max,
        rating_min=rating_min,
        geo=geo,
        limit=MAX_CANDIDATES,
    )
    relaxed: list[str] = []
    candidates = await context.backend.search(request)
    if not candidates and request.facilities:
        # Nobody has every facility asked for: show those with the others, and say so.
        request.tags = [*request.tags, *request.facilities]
        request.facilities = []
        relaxed.append("facilities")
        candidates = await context.backend.search(request)
    if not candidates and request.terms and (request.geo or request.facilities or request.open_24h):
        request.terms = []
        relaxed.append("words")
        candidates = await context.backend.search(request)
    if not candidates and request.geo is not None:
        request.geo = GeoFilter(request.geo.lat, request.geo.lon, request.geo.radius_m * 3)
        relaxed.append("distance")
        candidates = await context.backend.search(request)

    local_now = now.astimezone(context.zone)
    ranked = rank(
        candidates,
        origin=centre,
        radius_m=request.geo.radius_m if request.geo else None,
        has_text=bool(parsed.terms or parsed.attributes),
        wanted_tags=parsed.attributes,
        avoid_tags=parsed.avoid_attributes,
        prefer_cheap=parsed.cheap,
        price_cap=price_max,
        local_now=local_now,
        open_now_required=open_now,
    )
    first = (page - 1) * size
    marks = highlight_terms(parsed.free_words + list(parsed.corrections.values()), parsed.attributes)
    hits = []
    for item in ranked[first : first + size]:
        doc = item.candidate.doc
        hits.append(
            SearchHit(
                branch_id=doc.branch_id,
                name=doc.name,
                address=doc.address,
                lat=doc.lat,
                lon=doc.lon,
                rating=doc.rating_avg,
                review_count=doc.review_count,
                monthly_price_krw=doc.monthly_price_krw,
                facilities=doc.facilities,
                tags=doc.tags,
                score=round(item.score, 4),
                why=Why(
                    facilities=[facility for facility in facilities if facility in doc.facilities],
                    tags=item.matched_tags,
                    place=parsed.place.name_ko if parsed.place else None,
                    distance_m=round(item.distance_m) if item.distance_m is not None else None,
                    open_24h=doc.open_24h,
                    open_now=item.open_now if item.open_now is not None else is_open(doc, local_now),
                    highlights=item.candidate.highlights or highlights(doc, marks),
                ),
            )
        )
    return SearchPage(
        query=query,
        interpretation=Interpretation(
            place=parsed.place.name_ko if parsed.place else None,
            place_id=parsed.place.id if parsed.place else None,
            near_me=parsed.near_me,
            facilities=facilities,
            attributes=parsed.attributes,
            avoid=parsed.avoid_attributes,
            open_24h=open_24h,
            open_now=open_now,
            price_max_krw=price_max,
            rating_min=rating_min,
            words=parsed.free_words,
            corrections=parsed.corrections,
        ),
        relaxed=relaxed,
        notes=notes,
        total=len(ranked),
        page=page,
        size=size,
        hits=hits,
        backend=context.backend.name,
        took_ms=round((time.perf_counter() - started) * 1000, 2),
    )
