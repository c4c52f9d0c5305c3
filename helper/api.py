"""helper's HTTP routes (thin): task types and bindings for branch staff; tasks, balance,
history and payouts for helpers; photos for whoever may review them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request, Response, UploadFile, status

from common.api import CurrentPrincipal, CurrentUserId, KernelDep, from_app_state, require_roles
from common.db import MAX_ROW_ID
from common.security import Principal, Role
from helper import ledger, tasks
from helper.classifier import ClassifierHolder, PackError
from helper.models import Payout, Task
from helper.schemas import (
    CLIENT_KEY,
    CODE,
    BalancePublic,
    BranchPayoutPublic,
    LedgerEntryPublic,
    LedgerPage,
    ModelIn,
    ModelPublic,
    PayoutIn,
    PayoutMoveIn,
    PayoutPublic,
    TaskPage,
    TaskPublic,
    TaskTypeIn,
    TaskTypePublic,
    reasons_of,
)
from helper.settings import HelperSettings
from helper.store import PhotoNotFound, PhotoStore

router = APIRouter(prefix="/v1")
BRANCH = r"^[a-z0-9][a-z0-9_-]{0,63}$"
BranchId = Annotated[str, Path(pattern=BRANCH)]
Settings = Annotated[HelperSettings, Depends(from_app_state("settings", HelperSettings))]


async def _photo_store(request: Request) -> PhotoStore:
    store: PhotoStore = request.app.state.photo_store
    return store


Store = Annotated[PhotoStore, Depends(_photo_store)]
Helper = Annotated[Principal, Depends(require_roles(Role.HELPER))]
Operator = Annotated[Principal, Depends(require_roles(Role.OPERATOR))]
STAFF = (Role.BRANCH_OWNER, Role.OPERATOR)


def _staff_for(principal: Principal, branch_id: str) -> uuid.UUID:
    """Owners of this branch (by their token's branch claims) and operators."""
    if not principal.has_any_role(STAFF) or not principal.may_act_for_branch(branch_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "not permitted for this branch")
    if principal.user_id is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs a person's account")
    return principal.user_id


def _me(principal: Principal) -> uuid.UUID:
    if principal.user_id is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs a person's account")
    return principal.user_id


def _task(task: Task) -> TaskPublic:
    return TaskPublic(
        id=task.id,
        branch_id=task.branch_id,
        task_type=task.task_type,
        title=task.title,
        reward_krw=task.reward_krw,
        status=task.status,
        submitted_at=task.submitted_at,
        photos=task.photo_count,
        verdict=task.outcome,
        confidence=task.confidence,
        reasons=reasons_of(task.reasons or []),
        model_version=task.model_version,
        decided_at=task.decided_at,
        decision_reason=task.decision_reason,
    )


# -- branch staff ------------------------------------------------------------------------


@router.put("/branches/{branch_id}/task-types/{code}")
async def put_task_type(
    branch_id: BranchId,
    code: Annotated[str, Path(pattern=CODE)],
    body: TaskTypeIn,
    principal: CurrentPrincipal,
    kernel: KernelDep,
) -> TaskTypePublic:
    _staff_for(principal, branch_id)
    row = await tasks.put_task_type(
        kernel.db, branch_id=branch_id, code=code, spec=tasks.TaskTypeIn(**body.model_dump())
    )
    return TaskTypePublic(branch_id=row.branch_id, code=row.code, **body.model_dump())


@router.get("/branches/{branch_id}/task-types")
async def list_task_types(branch_id: BranchId, principal: CurrentPrincipal, kernel: KernelDep) -> list[TaskTypePublic]:
    """Staff of the branch, and helpers bound to it."""
    staff = principal.has_any_role(STAFF) and principal.may_act_for_branch(branch_id)
    if not staff and (
        Role.HELPER not in principal.roles
        or branch_id not in await tasks.branches_of(kernel.db, helper_id=_me(principal))
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "not permitted for this branch")
    return [
        TaskTypePublic(
            branch_id=row.branch_id,
            code=row.code,
            category=row.category,
            title=row.title,
            reward_krw=row.reward_krw,
            expected_photos=row.expected_photos,
            daily_limit=row.daily_limit,
            active=row.active,
        )
        for row in await tasks.task_types_of(kernel.db, branch_id=branch_id)
    ]


@router.put("/branches/{branch_id}/helpers/{helper_id}", status_code=status.HTTP_204_NO_CONTENT)
async def bind_helper(
    branch_id: BranchId, helper_id: uuid.UUID, principal: CurrentPrincipal, kernel: KernelDep
) -> None:
    by = _staff_for(principal, branch_id)
    await tasks.bind(kernel.db, helper_id=helper_id, branch_id=branch_id, by=by)


@router.delete("/branches/{branch_id}/helpers/{helper_id}", status_code=status.HTTP_204_NO_CONTENT)
async def unbind_helper(
    branch_id: BranchId, helper_id: uuid.UUID, principal: CurrentPrincipal, kernel: KernelDep
) -> None:
    _staff_for(principal, branch_id)
    if not await tasks.unbind(kernel.db, helper_id=helper_id, branch_id=branch_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "that helper is not bound to this branch")


@router.get("/tasks/{task_id}/photos/{position}")
async def task_photo(
    task_id: uuid.UUID,
    position: Annotated[int, Path(ge=0, le=4)],
    principal: CurrentPrincipal,
    kernel: KernelDep,
    store: Store,
) -> Response:
    """The helper who sent it, the branch's owners, operators."""
    task = await tasks.task_of(kernel.db, task_id=task_id)
    if task is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such task")
    if task.helper_id != principal.user_id:
        _staff_for(principal, task.branch_id)
    photo = await tasks.photo(kernel.db, task_id=task_id, position=position)
    if photo is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such photo")
    try:
        data = await store.get(photo.key)
    except PhotoNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "photo missing from the store") from exc
    return Response(data, media_type=photo.content_type, headers={"cache-control": "private, max-age=3600"})


# -- helpers -----------------------------------------------------------------------------


@router.post("/tasks", status_code=status.HTTP_201_CREATED)
async def submit_task(
    response: Response,
    principal: Helper,
    helper_id: CurrentUserId,
    kernel: KernelDep,
    settings: Settings,
    store: Store,
    branch_id: Annotated[str, Form(pattern=BRANCH)],
    task_type: Annotated[str, Form(pattern=CODE)],
    client_key: Annotated[str, Form(pattern=CLIENT_KEY)],
    photos: list[UploadFile],
) -> TaskPublic:
    uploads = []
    for upload in photos[: tasks.MAX_PHOTOS + 1]:
        data = await upload.read(settings.helper_photo_max_bytes + 1)
        uploads.append(data)
    if len(photos) > tasks.MAX_PHOTOS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"send at most {tasks.MAX_PHOTOS} photos")
    try:
        submitted = await tasks.submit(
            kernel,
            settings=settings,
            store=store,
            helper_id=helper_id,
            branch_id=branch_id,
            task_type=task_type,
            client_key=client_key,
            uploads=uploads,
        )
    except tasks.SubmissionRefused as exc:
        raise HTTPException(exc.status, exc.reason) from exc
    if submitted.replay:
        response.status_code = status.HTTP_200_OK
    return _task(submitted.task)


@router.get("/me/tasks")
async def my_tasks(
    principal: Helper,
    helper_id: CurrentUserId,
    kernel: KernelDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: datetime | None = None,
) -> TaskPage:
    rows = await tasks.tasks_of(kernel.db, helper_id=helper_id, limit=limit, before=before)
    return TaskPage(
        tasks=[_task(row) for row in rows],
        next_before=rows[-1].submitted_at if len(rows) == limit else None,
    )


@router.get("/me/tasks/{task_id}")
async def my_task(task_id: uuid.UUID, principal: Helper, helper_id: CurrentUserId, kernel: KernelDep) -> TaskPublic:
    task = await tasks.task_of(kernel.db, task_id=task_id)
    if task is None or task.helper_id != helper_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such task of yours")
    return _task(task)


@router.get("/me/balance")
async def my_balance(principal: Helper, helper_id: CurrentUserId, kernel: KernelDep) -> BalancePublic:
    return BalancePublic(helper_id=helper_id, balance_krw=await ledger.balance_of(kernel.db, helper_id=helper_id))


@router.get("/me/ledger")
async def my_ledger(
    principal: Helper,
    helper_id: CurrentUserId,
    kernel: KernelDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
) -> LedgerPage:
    rows = await ledger.history_of(kernel.db, helper_id=helper_id, limit=limit, before_id=before_id)
    return LedgerPage(
        entries=[
            LedgerEntryPublic(
                id=row.id,
                kind=row.kind,
                amount_krw=row.amount_krw,
                task_id=row.task_id,
                payout_id=row.payout_id,
                created_at=row.created_at,
            )
            for row in rows
        ],
        next_before_id=rows[-1].id if len(rows) == limit else None,
    )


def _payout(row: Payout) -> PayoutPublic:
    return PayoutPublic(
        id=row.id,
        amount_krw=row.amount_krw,
        status=row.status,
        requested_at=row.requested_at,
        updated_at=row.updated_at,
        note=row.note,
    )


@router.post("/me/payouts", status_code=status.HTTP_201_CREATED)
async def request_payout(
    body: PayoutIn, principal: Helper, helper_id: CurrentUserId, kernel: KernelDep
) -> PayoutPublic:
    try:
        row = await ledger.request_payout(
            kernel.db, helper_id=helper_id, amount_krw=body.amount_krw, client_key=body.client_key
        )
    except ledger.PayoutRefused as exc:
        raise HTTPException(exc.status, exc.reason) from exc
    return _payout(row)


@router.get("/me/payouts")
async def my_payouts(principal: Helper, helper_id: CurrentUserId, kernel: KernelDep) -> list[PayoutPublic]:
    return [_payout(row) for row in await ledger.payouts_of(kernel.db, helper_id=helper_id)]


@router.post("/payouts/{payout_id}/status")
async def move_payout(payout_id: uuid.UUID, body: PayoutMoveIn, principal: Operator, kernel: KernelDep) -> PayoutPublic:
    """Operators settle payouts (finance sits at head office, not at a branch)."""
    try:
        row = await ledger.move_payout(kernel, payout_id=payout_id, to=body.status, note=body.note, by=_me(principal))
    except ledger.PayoutRefused as exc:
        raise HTTPException(exc.status, exc.reason) from exc
    return _payout(row)


@router.get("/branches/{branch_id}/payouts")
async def branch_payouts(
    branch_id: BranchId,
    principal: CurrentPrincipal,
    kernel: KernelDep,
    status_: Annotated[str | None, Query(alias="status", pattern=r"^(requested|approved|paid|rejected)$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
) -> list[BranchPayoutPublic]:
    """The branch's staff: payouts of the helpers bound to it."""
    _staff_for(principal, branch_id)
    rows = await ledger.payouts_of_branch(kernel.db, branch_id=branch_id, status=status_, limit=limit)
    return [
        BranchPayoutPublic(**_payout(row).model_dump(), helper_id=row.helper_id, earned_here_krw=earned)
        for row, earned in rows
    ]


@router.post("/branches/{branch_id}/payouts/{payout_id}/status")
async def sign_off_payout(
    branch_id: BranchId, payout_id: uuid.UUID, body: PayoutMoveIn, principal: CurrentPrincipal, kernel: KernelDep
) -> PayoutPublic:
    """The branch's owner approves or rejects a request of a helper bound to the branch;
    operators acting here are still head office (every move of PAYOUT_MOVES)."""
    by = _staff_for(principal, branch_id)
    scope = None if Role.OPERATOR in principal.roles else branch_id
    try:
        row = await ledger.move_payout(
            kernel, payout_id=payout_id, to=body.status, note=body.note, by=by, branch_id=scope
        )
    except ledger.PayoutRefused as exc:
        raise HTTPException(exc.status, exc.reason) from exc
    return _payout(row)


# -- the judge's learned model -------------------------------------------------------------


async def _classifier(request: Request) -> ClassifierHolder:
    holder: ClassifierHolder = request.app.state.classifier
    return holder


Classifier = Annotated[ClassifierHolder, Depends(_classifier)]


@router.get("/judge/model")
async def judge_model(principal: Operator, classifier: Classifier) -> ModelPublic:
    return ModelPublic(model_version=classifier.version)


@router.post("/judge/model")
async def deploy_judge_model(
    body: ModelIn, principal: Operator, classifier: Classifier, settings: Settings
) -> ModelPublic:
    """Swap in a pack from the packs directory; verdicts in flight finish on the old one.
    Each replica swaps on its own call (a rollout restarts pods with the new setting)."""
    if settings.judge_packs_dir is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "no packs directory is configured")
    pack = settings.judge_packs_dir / body.pack
    if not pack.is_dir():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no pack {body.pack!r}")
    try:
        version = await asyncio.to_thread(classifier.deploy, pack)
    except PackError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.reason) from exc
    return ModelPublic(model_version=version)
