"""search's HTTP routes (thin). Searching, suggestions, branch pages and "similar"
are for any signed-in principal (members' app, owners' console, kiosks); "for you"
needs a person's account; a reindex needs an operator."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import ValidationError

from common.api import CurrentPrincipal, CurrentUserId, KernelDep, from_app_state, require_roles
from common.events.envelope import utc_now
from common.security import Role
from search.branches import reviews_of, visits_of
from search.indexing import IndexUpdater
from search.queries import SearchContext, search
from search.ranking import is_open
from search.recommendations import for_member, similar
from search.schemas import (
    BranchDetail,
    Filters,
    Recommendations,
    ReindexOut,
    ReviewOut,
    ReviewsPage,
    SearchIn,
    SearchPage,
    SuggestionOut,
    Suggestions,
    clean_query,
)

router = APIRouter()
_search_context = from_app_state("search", SearchContext)


async def ready_context(request: Request) -> SearchContext:
    """The hot path's context, once its models and catalogue are loaded (seconds after a
    start; requests arriving earlier wait rather than see an empty catalogue)."""
    context = await _search_context(request)
    await context.wait_ready()
    return context


Context = Annotated[SearchContext, Depends(ready_context)]
Updater = Annotated[IndexUpdater, Depends(from_app_state("index_updater", IndexUpdater))]
OPERATOR = Depends(require_roles(Role.OPERATOR))
BRANCH_ID = r"^[A-Za-z0-9_.:-]{1,64}$"
GET_SEARCH_PARAMS = frozenset(
    {"q", "lat", "lon", "page", "size", "facility", "open_24h", "open_now", "price_max_krw", "rating_min", "radius_m"}
)


def _unprocessable(exc: ValidationError) -> HTTPException:
    errors = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}
        for error in exc.errors()
    ]
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, errors)


async def _run(context: SearchContext, body: SearchIn) -> SearchPage:
    origin = (body.lat, body.lon) if body.lat is not None and body.lon is not None else None
    return await search(
        context, query=body.q, filters=body.filters, origin=origin, page=body.page, size=body.size, now=utc_now()
    )


@router.post("/search")
async def search_post(body: SearchIn, _who: CurrentPrincipal, context: Context) -> SearchPage:
    return await _run(context, body)


@router.get("/search")
async def search_get(request: Request, _who: CurrentPrincipal, context: Context) -> SearchPage:
    params = request.query_params
    unknown = sorted(set(params.keys()) - GET_SEARCH_PARAMS)
    if unknown:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"unknown parameters {unknown}; known: {sorted(GET_SEARCH_PARAMS)}",
        )
    single = {key: params[key] for key in params if key != "facility"}
    filters: dict[str, Any] = {
        key: single.pop(key)
        for key in ("open_24h", "open_now", "price_max_krw", "rating_min", "radius_m")
        if key in single
    }
    filters["facilities"] = params.getlist("facility")
    try:
        body = SearchIn.model_validate({**single, "filters": Filters.model_validate(filters)})
    except ValidationError as exc:
        raise _unprocessable(exc) from exc
    return await _run(context, body)


@router.get("/suggest")
async def suggest(
    _who: CurrentPrincipal,
    context: Context,
    q: Annotated[str, Query(min_length=1, max_length=100)],
    limit: Annotated[int, Query(ge=1, le=20)] = 8,
) -> Suggestions:
    try:
        prefix = clean_query(q)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    if not prefix:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "empty prefix")
    found = context.catalogue.suggest(prefix, limit=limit)
    return Suggestions(
        prefix=prefix,
        suggestions=[SuggestionOut(text=item.text, kind=item.kind, branch_id=item.branch_id) for item in found],
    )


def _review(row: Any) -> ReviewOut:
    return ReviewOut(review_id=row.review_id, rating=row.rating, text=row.text, posted_at=row.posted_at)


@router.get("/branches/{branch_id}")
async def branch_detail(
    branch_id: str,
    _who: CurrentPrincipal,
    kernel: KernelDep,
    context: Context,
) -> BranchDetail:
    doc = context.catalogue.docs.get(branch_id)
    if doc is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such branch (or it is closed)")
    async with kernel.db.sessions() as session:
        reviews = await reviews_of(session, branch_id=branch_id, limit=5)
    return BranchDetail(
        branch_id=doc.branch_id,
        name=doc.name,
        address=doc.address,
        description=doc.description,
        lat=doc.lat,
        lon=doc.lon,
        open_24h=doc.open_24h,
        weekly_hours=doc.weekly_hours,
        open_now=is_open(doc, utc_now().astimezone(context.zone)),
        facilities=doc.facilities,
        tags=doc.tags,
        keywords=doc.keywords,
        monthly_price_krw=doc.monthly_price_krw,
        day_pass_krw=doc.day_pass_krw,
        photos_count=doc.photos_count,
        rating=doc.rating_avg,
        review_count=doc.review_count,
        reviews=[_review(row) for row in reviews],
    )


@router.get("/branches/{branch_id}/reviews")
async def branch_reviews(
    branch_id: str,
    _who: CurrentPrincipal,
    kernel: KernelDep,
    context: Context,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: datetime | None = None,
) -> ReviewsPage:
    if branch_id not in context.catalogue.docs:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such branch (or it is closed)")
    if before is not None and before.tzinfo is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "'before' needs a time zone")
    async with kernel.db.sessions() as session:
        rows = await reviews_of(session, branch_id=branch_id, limit=limit, before=before)
    return ReviewsPage(
        reviews=[_review(row) for row in rows], next_before=rows[-1].posted_at if len(rows) == limit else None
    )


@router.get("/branches/{branch_id}/similar")
async def branch_similar(
    branch_id: str,
    _who: CurrentPrincipal,
    context: Context,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> Recommendations:
    items = similar(context.catalogue, branch_id=branch_id, limit=limit)
    if items is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such branch (or it is closed)")
    return Recommendations(basis=f"like {branch_id}", items=items)


@router.get("/me/recommendations")
async def my_recommendations(
    user_id: CurrentUserId,
    kernel: KernelDep,
    context: Context,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> Recommendations:
    async with kernel.db.sessions() as session:
        visits = await visits_of(session, member_id=user_id)
    items = for_member(context.catalogue, visits=visits, limit=limit)
    return Recommendations(basis="your visits" if visits else "popular", items=items)


@router.post("/admin/reindex", dependencies=[OPERATOR])
async def reindex(updater: Updater, context: Context) -> ReindexOut:
    documents = await updater.rebuild()
    return ReindexOut(documents=documents, backend=context.backend.name)
