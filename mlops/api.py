"""mlops' HTTP routes (thin), for the operations dashboard: operators only, except the
deployed version of a family, which every instance reads as it starts (pack keys and
digests are not secret; the gateway does not route anonymous callers here)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status

from common.api import KernelDep, from_app_state, require_roles
from common.security import Principal, Role
from contracts.models import MODEL_VERSION_PATTERN
from mlops import deploys, registry, runs
from mlops.deploys import CanaryBounds
from mlops.models import Deployment, ModelVersion, SwapReport, TrainingRun
from mlops.registry import RegistryError
from mlops.schemas import (
    CanaryPublic,
    DeployedPublic,
    DeployIn,
    DeploymentPublic,
    Family,
    RollbackIn,
    RunPublic,
    ServedPack,
    Status,
    SwapReportPublic,
    VersionPublic,
)
from mlops.settings import MlopsSettings

router = APIRouter(prefix="/v1")
Operator = Annotated[Principal, Depends(require_roles(Role.OPERATOR))]
Settings = Annotated[MlopsSettings, Depends(from_app_state("settings", MlopsSettings))]
VersionPath = Annotated[str, Path(pattern=MODEL_VERSION_PATTERN)]


def _refused(exc: RegistryError) -> HTTPException:
    return HTTPException(exc.status, exc.reason)


def _version(row: ModelVersion) -> VersionPublic:
    return VersionPublic(
        family=row.family,
        version=row.version,
        status=row.status,
        files=list(registry.pack_files(row)),
        metrics=row.metrics,
        verification=row.verification,
        data_snapshot_id=row.data_snapshot_id,
        code_version=row.code_version,
        parameters=row.parameters,
        parent_version=row.parent_version,
        embedding_space=row.embedding_space,
        run_id=row.run_id,
        created_at=row.created_at,
        verified_at=row.verified_at,
        deployed_at=row.deployed_at,
        retired_at=row.retired_at,
    )


def _report(row: SwapReport) -> SwapReportPublic:
    return SwapReportPublic(
        instance_id=row.instance_id,
        version=row.version,
        outcome=row.outcome,
        reason=row.reason,
        active_version=row.active_version,
        load_ms=row.load_ms,
        swap_ms=row.swap_ms,
        reported_at=row.reported_at,
    )


def _deployment(row: Deployment, reports: list[SwapReport] | None = None) -> DeploymentPublic:
    return DeploymentPublic(
        deployment_id=row.id,
        family=row.family,
        version=row.version,
        action=row.action,
        canary_share=row.canary_share,
        previous_version=row.previous_version,
        reenrolment_approved=row.reenrolment_approved,
        requested_by=row.requested_by,
        reason=row.reason,
        started_at=row.started_at,
        reports=[_report(report) for report in reports or []],
    )


def _served(deployment: Deployment | None, row: ModelVersion | None) -> ServedPack | None:
    if deployment is None or row is None:
        return None
    return ServedPack(
        deployment_id=deployment.id,
        version=row.version,
        action=deployment.action,
        canary_share=deployment.canary_share,
        files=list(registry.pack_files(row)),
        embedding_space=row.embedding_space,
        reenrolment_approved=deployment.reenrolment_approved,
        deployed_at=deployment.started_at,
    )


def _run(row: TrainingRun) -> RunPublic:
    return RunPublic(
        run_id=row.id,
        family=row.family,
        kind=row.kind,
        status=row.status,
        trigger=row.trigger,
        requested_by=row.requested_by,
        version=row.version,
        step=row.step,
        progress=row.progress,
        cancel_requested=row.cancel_requested,
        attempts=row.attempts,
        result=row.result,
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


# -- registry ---------------------------------------------------------------------------


@router.get("/models")
async def list_versions(
    kernel: KernelDep,
    _: Operator,
    family: Family | None = None,
    version_status: Annotated[Status | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[VersionPublic]:
    async with kernel.db.transaction() as session:
        rows = await registry.versions(session, family=family, status=version_status, limit=limit)
        return [_version(row) for row in rows]


@router.get("/models/{family}/versions/{version}")
async def get_version(kernel: KernelDep, _: Operator, family: Family, version: VersionPath) -> VersionPublic:
    async with kernel.db.transaction() as session:
        try:
            return _version(await registry.get(session, family=family, version=version))
        except RegistryError as exc:
            raise _refused(exc) from exc


@router.post("/models/{family}/versions/{version}/verify", status_code=status.HTTP_202_ACCEPTED)
async def verify_version(kernel: KernelDep, principal: Operator, family: Family, version: VersionPath) -> RunPublic:
    async with kernel.unit_of_work() as uow:
        try:
            row = await registry.get(uow.session, family=family, version=version)
        except RegistryError as exc:
            raise _refused(exc) from exc
        if row.status not in ("candidate", "rejected"):
            raise HTTPException(status.HTTP_409_CONFLICT, f"{family} {version} is {row.status}: nothing to verify")
        run = await runs.queue_run(
            uow, family=family, kind="verify", trigger="operator", requested_by=principal.subject, version=version
        )
    return _run(run)


# -- deployments ------------------------------------------------------------------------


@router.get("/models/{family}/deployed")
async def get_deployed(kernel: KernelDep, family: Family) -> DeployedPublic:
    async with kernel.db.transaction() as session:
        view = await deploys.deployed(session, family=family)
    return DeployedPublic(
        family=family,
        stable=_served(view.stable, view.stable_row),
        canary=_served(view.canary, view.canary_row),
        previous_version=view.previous_version,
    )


@router.get("/models/{family}/history")
async def get_history(
    kernel: KernelDep, _: Operator, family: Family, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[DeploymentPublic]:
    async with kernel.db.transaction() as session:
        rows = await deploys.history(session, family=family, limit=limit)
        return [_deployment(row, list(await deploys.reports(session, deployment_id=row.id))) for row in rows]


@router.post("/models/{family}/deployments", status_code=status.HTTP_201_CREATED)
async def deploy(
    kernel: KernelDep, principal: Operator, settings: Settings, family: Family, body: DeployIn
) -> DeploymentPublic:
    share = body.canary_share if body.canary_share is not None else settings.mlops_canary_share
    try:
        async with kernel.unit_of_work() as uow:
            row = await deploys.deploy(
                uow,
                family=family,
                version=body.version,
                canary_share=share,
                requested_by=principal.subject,
                reenrolment_approved=body.reenrolment_approved,
            )
    except RegistryError as exc:
        raise _refused(exc) from exc
    return _deployment(row)


@router.post("/models/{family}/promote", status_code=status.HTTP_201_CREATED)
async def promote(kernel: KernelDep, principal: Operator, family: Family) -> DeploymentPublic:
    try:
        async with kernel.unit_of_work() as uow:
            row = await deploys.promote(uow, family=family, requested_by=principal.subject)
    except RegistryError as exc:
        raise _refused(exc) from exc
    return _deployment(row)


@router.post("/models/{family}/rollback", status_code=status.HTTP_201_CREATED)
async def rollback(kernel: KernelDep, principal: Operator, family: Family, body: RollbackIn) -> DeploymentPublic:
    try:
        async with kernel.unit_of_work() as uow:
            row = await deploys.rollback(uow, family=family, requested_by=principal.subject, reason=body.reason)
    except RegistryError as exc:
        raise _refused(exc) from exc
    return _deployment(row)


@router.get("/models/{family}/canary")
async def get_canary(kernel: KernelDep, _: Operator, settings: Settings, family: Family) -> CanaryPublic:
    bounds = CanaryBounds(settings.mlops_canary_min_samples, settings.mlops_canary_max_worsening)
    async with kernel.db.transaction() as session:
        judgement = await deploys.judge_canary(session, family=family, bounds=bounds)
    if judgement is None:
        return CanaryPublic(family=family, canary_version=None, baseline_version=None)
    return CanaryPublic(
        family=family,
        canary_version=judgement.canary_version,
        baseline_version=judgement.baseline_version,
        canary_bad=judgement.canary_bad,
        canary_samples=judgement.canary_samples,
        baseline_bad=judgement.baseline_bad,
        baseline_samples=judgement.baseline_samples,
        decided=judgement.decided,
        worse=judgement.worse,
    )


@router.get("/deployments/{deployment_id}")
async def get_deployment(kernel: KernelDep, _: Operator, deployment_id: uuid.UUID) -> DeploymentPublic:
    async with kernel.db.transaction() as session:
        row = await session.get(Deployment, deployment_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such deployment")
        return _deployment(row, list(await deploys.reports(session, deployment_id=row.id)))


# -- training ---------------------------------------------------------------------------


@router.post("/models/{family}/training-runs", status_code=status.HTTP_202_ACCEPTED)
async def start_training(kernel: KernelDep, principal: Operator, family: Family) -> RunPublic:
    try:
        async with kernel.unit_of_work() as uow:
            run = await runs.start_training(uow, family=family, requested_by=principal.subject)
    except RegistryError as exc:
        raise _refused(exc) from exc
    return _run(run)


@router.get("/training-runs")
async def list_runs(
    kernel: KernelDep, _: Operator, family: Family | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[RunPublic]:
    async with kernel.db.transaction() as session:
        return [_run(row) for row in await runs.list_runs(session, family=family, limit=limit)]


@router.get("/training-runs/{run_id}")
async def get_run(kernel: KernelDep, _: Operator, run_id: uuid.UUID) -> RunPublic:
    async with kernel.db.transaction() as session:
        try:
            return _run(await runs.get_run(session, run_id=run_id))
        except RegistryError as exc:
            raise _refused(exc) from exc


@router.post("/training-runs/{run_id}/cancel")
async def cancel_run(kernel: KernelDep, _: Operator, run_id: uuid.UUID) -> RunPublic:
    try:
        async with kernel.db.transaction() as session:
            run = await runs.cancel(session, run_id=run_id)
    except RegistryError as exc:
        raise _refused(exc) from exc
    return _run(run)
