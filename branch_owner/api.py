"""branch_owner's HTTP routes (thin). Owners act only for the branches in their token;
operators for every branch; members read profiles and write their own reviews."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status

from branch_owner import photos, profiles, queue, reviews
from branch_owner.models import Branch, BranchPhoto, QueueItem, Review
from branch_owner.preferences import Preferences
from branch_owner.schemas import (
    BranchIn,
    BranchPhotoPublic,
    BranchPublic,
    BulkDecisionIn,
    DecisionIn,
    DecisionResult,
    PreferencePublic,
    QueueItemPublic,
    QueuePage,
    ReasonPublic,
    ReplyIn,
    ReportIn,
    ReviewIn,
    ReviewPublic,
)
from branch_owner.settings import BranchOwnerSettings
from common.api import CurrentPrincipal, KernelDep
from common.events.envelope import utc_now
from common.objectstore import ObjectNotFound, ObjectStore
from common.security import Principal, Role

router = APIRouter(prefix="/v1")
BranchId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
STAFF = (Role.BRANCH_OWNER, Role.OPERATOR)
# Where the console fetches a task photo: helper's route behind the gateway.
PHOTO_PATH = "/api/helper/v1/tasks/{task_id}/photos/{position}"


def _staff_for(principal: Principal, branch_id: str) -> uuid.UUID:
    if not principal.has_any_role(STAFF) or not principal.may_act_for_branch(branch_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "not permitted for this branch")
    return _person(principal)


def _person(principal: Principal) -> uuid.UUID:
    if principal.user_id is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs a person's account")
    return principal.user_id


def _photo(row: BranchPhoto) -> BranchPhotoPublic:
    return BranchPhotoPublic(
        id=row.id,
        url=profiles.PHOTO_PATH.format(branch_id=row.branch_id, photo_id=row.id),
        width=row.width,
        height=row.height,
        size_bytes=row.size_bytes,
        uploaded_at=row.uploaded_at,
    )


def _branch(row: Branch, uploaded: Sequence[BranchPhoto] = ()) -> BranchPublic:
    return BranchPublic(
        branch_id=row.branch_id,
        name=row.name,
        address=row.address,
        lat=row.lat,
        lon=row.lon,
        open_24h=row.open_24h,
        hours=row.hours,
        facilities=row.facilities,
        equipment=row.equipment,
        prices=row.prices,
        photo_urls=row.photo_urls,
        photos=[_photo(item) for item in uploaded],
        revision=row.revision,
        updated_at=row.updated_at,
    )


# -- branch profiles -----------------------------------------------------------------------


@router.put("/branches/{branch_id}")
async def put_branch(
    branch_id: BranchId, body: BranchIn, principal: CurrentPrincipal, kernel: KernelDep, response: Response
) -> BranchPublic:
    by = _staff_for(principal, branch_id)
    data = body.model_dump(mode="json")
    try:
        row, created = await profiles.put_profile(
            kernel, branch_id=branch_id, profile=profiles.ProfileIn(**data), by=by
        )
    except profiles.TooManyPhotos as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"a branch shows at most {profiles.MAX_PHOTOS} photos, links and uploads together",
        ) from exc
    if created:
        response.status_code = status.HTTP_201_CREATED
    return _branch(row)


@router.get("/branches/{branch_id}")
async def get_branch(branch_id: BranchId, principal: CurrentPrincipal, kernel: KernelDep) -> BranchPublic:
    """Anybody signed in: members look branches up."""
    row = await profiles.profile_of(kernel.db, branch_id=branch_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such branch")
    return _branch(row, await photos.of_branch(kernel.db, branch_id=branch_id))


@router.get("/branches")
async def my_branches(principal: CurrentPrincipal, kernel: KernelDep) -> list[BranchPublic]:
    """An owner's own branches; every branch for operators."""
    if not principal.has_any_role(STAFF):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "role not permitted")
    scope = None if Role.OPERATOR in principal.roles else sorted(principal.branches)
    return [_branch(row) for row in await profiles.profiles_of(kernel.db, branch_ids=scope)]


# -- branch photos ----------------------------------------------------------------------------


def _photo_store(request: Request) -> ObjectStore:
    store: ObjectStore = request.app.state.photo_store
    return store


@router.post("/branches/{branch_id}/photos", status_code=status.HTTP_201_CREATED)
async def upload_photo(
    branch_id: BranchId, request: Request, principal: CurrentPrincipal, kernel: KernelDep
) -> BranchPhotoPublic:
    """The branch's owner or an operator: one image as the body (image/jpeg, image/png or
    image/webp). It is re-encoded, so what members see carries no metadata."""
    by = _staff_for(principal, branch_id)
    settings: BranchOwnerSettings = request.app.state.settings
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("image/jpeg", "image/png", "image/webp"):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send the photo as image/jpeg, image/png or image/webp"
        )
    data = await request.body()
    try:
        clean = await asyncio.to_thread(
            photos.clean, data, max_bytes=settings.branch_photo_max_bytes, max_pixels=settings.branch_photo_max_pixels
        )
        row = await photos.add(kernel, store=_photo_store(request), branch_id=branch_id, photo=clean, by=by)
    except photos.PhotoRefused as exc:
        raise HTTPException(exc.status, exc.reason) from exc
    except photos.NoSuchBranch as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, "save the branch's profile before adding photos") from exc
    except profiles.TooManyPhotos as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"a branch shows at most {profiles.MAX_PHOTOS} photos: delete one first"
        ) from exc
    return _photo(row)


@router.get("/branches/{branch_id}/photos")
async def list_photos(branch_id: BranchId, principal: CurrentPrincipal, kernel: KernelDep) -> list[BranchPhotoPublic]:
    """Anybody signed in, like the profile they belong to."""
    return [_photo(row) for row in await photos.of_branch(kernel.db, branch_id=branch_id)]


@router.get("/branches/{branch_id}/photos/{photo_id}")
async def get_photo(
    branch_id: BranchId, photo_id: uuid.UUID, request: Request, principal: CurrentPrincipal, kernel: KernelDep
) -> Response:
    try:
        row, data = await photos.read(kernel.db, store=_photo_store(request), branch_id=branch_id, photo_id=photo_id)
    except ObjectNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such photo of this branch") from exc
    # A photo's id never names other bytes: cacheable for as long as the browser likes.
    return Response(data, media_type=row.content_type, headers={"cache-control": "private, max-age=86400, immutable"})


@router.delete("/branches/{branch_id}/photos/{photo_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_photo(
    branch_id: BranchId, photo_id: uuid.UUID, request: Request, principal: CurrentPrincipal, kernel: KernelDep
) -> Response:
    by = _staff_for(principal, branch_id)
    if not await photos.remove(kernel, store=_photo_store(request), branch_id=branch_id, photo_id=photo_id, by=by):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such photo of this branch")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- the review queue ----------------------------------------------------------------------


def _item(row: QueueItem, sla_s: float) -> QueueItemPublic:
    waiting = ((row.decided_at or utc_now()) - row.judged_at).total_seconds()
    return QueueItemPublic(
        task_id=row.task_id,
        branch_id=row.branch_id,
        helper_id=row.helper_id,
        task_type=row.task_type,
        title=row.title,
        reward_krw=row.reward_krw,
        photo_urls=[PHOTO_PATH.format(task_id=row.task_id, position=index) for index in range(len(row.photos))],
        submitted_at=row.submitted_at,
        judged_at=row.judged_at,
        verdict=row.outcome,
        confidence=row.confidence,
        reasons=[ReasonPublic(**reason) for reason in row.reasons],
        model_version=row.model_version,
        status=row.status,
        waiting_s=max(0.0, waiting),
        overdue=row.status == "pending" and waiting > sla_s,
        decided_at=row.decided_at,
        decision_reason=row.decision_reason,
        ai_overridden=row.ai_overridden,
    )


def _sla(request: Request) -> float:
    settings: BranchOwnerSettings = request.app.state.settings
    return settings.review_sla_s


@router.get("/branches/{branch_id}/queue")
async def review_queue(
    branch_id: BranchId,
    request: Request,
    principal: CurrentPrincipal,
    kernel: KernelDep,
    status_: Annotated[str, Query(alias="status", pattern=r"^(pending|approved|rejected)$")] = "pending",
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    after: Annotated[str | None, Query(max_length=120)] = None,
) -> QueuePage:
    _staff_for(principal, branch_id)
    try:
        cursor = queue.Cursor.decode(after) if after else None
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "bad 'after' cursor") from exc
    rows = await queue.page(kernel.db, branch_id=branch_id, status=status_, limit=limit, after=cursor)
    sla = _sla(request)
    return QueuePage(
        items=[_item(row, sla) for row in rows],
        next_after=queue.Cursor(rows[-1].judged_at, rows[-1].task_id).encode() if len(rows) == limit else None,
    )


@router.get("/branches/{branch_id}/queue/{task_id}")
async def queue_item(
    branch_id: BranchId, task_id: uuid.UUID, request: Request, principal: CurrentPrincipal, kernel: KernelDep
) -> QueueItemPublic:
    _staff_for(principal, branch_id)
    row = await queue.item(kernel.db, task_id=task_id)
    if row is None or row.branch_id != branch_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such task in this branch's queue")
    return _item(row, _sla(request))


@router.post("/branches/{branch_id}/queue/{task_id}/decision")
async def decide_one(
    branch_id: BranchId, task_id: uuid.UUID, body: DecisionIn, principal: CurrentPrincipal, kernel: KernelDep
) -> DecisionResult:
    by = _staff_for(principal, branch_id)
    result = (
        await queue.decide(
            kernel, branch_id=branch_id, task_ids=[task_id], decision=body.decision, reason=body.reason, by=by
        )
    )[task_id]
    if result.startswith("not found"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, result)
    if result.startswith("already"):
        raise HTTPException(status.HTTP_409_CONFLICT, result)
    if result not in ("approved", "rejected"):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, result)
    return DecisionResult(task_id=task_id, result=result, ok=True)


@router.post("/branches/{branch_id}/queue/decisions")
async def decide_many(
    branch_id: BranchId, body: BulkDecisionIn, principal: CurrentPrincipal, kernel: KernelDep
) -> list[DecisionResult]:
    by = _staff_for(principal, branch_id)
    task_ids = list(dict.fromkeys(body.task_ids))
    results = await queue.decide(
        kernel, branch_id=branch_id, task_ids=task_ids, decision=body.decision, reason=body.reason, by=by
    )
    return [
        DecisionResult(task_id=task_id, result=result, ok=result in ("approved", "rejected"))
        for task_id, result in results.items()
    ]


# -- reviews ---------------------------------------------------------------------------------


def _review(row: Review, *, staff: bool) -> ReviewPublic:
    return ReviewPublic(
        id=row.id,
        branch_id=row.branch_id,
        member_id=row.member_id,
        rating=row.rating,
        text=row.text,
        revision=row.revision,
        updated_at=row.updated_at,
        reply=row.reply,
        replied_at=row.replied_at,
        reports=row.reports if staff else None,
    )


@router.put("/branches/{branch_id}/reviews/mine")
async def post_review(
    branch_id: BranchId, body: ReviewIn, principal: CurrentPrincipal, kernel: KernelDep
) -> ReviewPublic:
    """Members only; each member's own review."""
    if Role.CUSTOMER not in principal.roles:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only members review branches")
    try:
        row = await reviews.post(
            kernel, branch_id=branch_id, member_id=_person(principal), rating=body.rating, text=body.text
        )
    except reviews.ReviewRefused as exc:
        raise HTTPException(exc.status, exc.reason) from exc
    return _review(row, staff=False)


@router.get("/branches/{branch_id}/reviews")
async def branch_reviews(
    branch_id: BranchId,
    principal: CurrentPrincipal,
    kernel: KernelDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[ReviewPublic]:
    staff = principal.has_any_role(STAFF) and principal.may_act_for_branch(branch_id)
    rows = await reviews.of_branch(kernel.db, branch_id=branch_id, limit=limit, include_hidden=staff)
    return [_review(row, staff=staff) for row in rows]


@router.post("/reviews/{review_id}/reply")
async def reply_to_review(
    review_id: uuid.UUID, body: ReplyIn, principal: CurrentPrincipal, kernel: KernelDep
) -> ReviewPublic:
    row = await reviews.get(kernel.db, review_id=review_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such review")
    by = _staff_for(principal, row.branch_id)
    try:
        row = await reviews.reply(kernel.db, review_id=review_id, text=body.text, by=by)
    except reviews.ReviewRefused as exc:
        raise HTTPException(exc.status, exc.reason) from exc
    return _review(row, staff=True)


@router.post("/reviews/{review_id}/reports", status_code=status.HTTP_201_CREATED)
async def report_review(
    review_id: uuid.UUID, body: ReportIn, principal: CurrentPrincipal, kernel: KernelDep
) -> dict[str, int]:
    """Anybody signed in, once per review."""
    try:
        count = await reviews.report(kernel.db, review_id=review_id, reporter_id=_person(principal), reason=body.reason)
    except reviews.ReviewRefused as exc:
        raise HTTPException(exc.status, exc.reason) from exc
    return {"reports": count}


# -- preference profile --------------------------------------------------------------------


@router.post("/branches/{branch_id}/preference-profile", status_code=status.HTTP_201_CREATED)
async def derive_preferences(
    branch_id: BranchId, request: Request, principal: CurrentPrincipal, kernel: KernelDep
) -> PreferencePublic:
    by = _staff_for(principal, branch_id)
    preferences: Preferences = request.app.state.preferences
    row = await preferences.derive(kernel, branch_id=branch_id, by=by)
    return PreferencePublic(
        branch_id=row.branch_id,
        preference_id=row.preference_id,
        facility_tags=row.facility_tags,
        usage_tags=row.usage_tags,
        created_at=row.created_at,
    )
