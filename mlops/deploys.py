"""Deploy, promote and roll back a family's versions; follow what instances report.

Every change of what a family serves is one transaction on the family's state row (locked)
that writes a Deployment and emits one ``ModelDeployed`` through the outbox, so the event
is published if and only if the change committed (see contracts.models for the canary
rules instances apply). Instances answer with ``ModelSwapReported`` (recorded per instance)
and report their live signal with ``ModelSignalReported``; a canary whose bad-rate is worse
than the stable version's over the same windows, beyond the configured bound and with
enough samples on both sides, is rolled back automatically.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.events.envelope import utc_now
from common.events.outbox import UnitOfWork
from contracts import ModelDeployed, ModelSignalReported, ModelSwapReported
from mlops import registry
from mlops.models import Deployment, FamilyState, ModelSignal, ModelVersion, SwapReport
from mlops.registry import RegistryError

AUTOMATIC = "mlops"


@dataclass(frozen=True)
class CanaryBounds:
    min_samples: int
    max_worsening: float


@dataclass(frozen=True)
class CanaryJudgement:
    canary_version: str
    canary_bad: int
    canary_samples: int
    baseline_version: str | None
    baseline_bad: int
    baseline_samples: int
    worse: bool
    decided: bool

    @property
    def canary_rate(self) -> float:
        return self.canary_bad / self.canary_samples if self.canary_samples else 0.0

    @property
    def baseline_rate(self) -> float:
        return self.baseline_bad / self.baseline_samples if self.baseline_samples else 0.0


async def _state(session: AsyncSession, family: str) -> FamilyState:
    return await registry.lock_family(session, family=family)


def _announce(
    uow: UnitOfWork,
    *,
    row: ModelVersion,
    action: str,
    share: float,
    previous: str | None,
    requested_by: str,
    reason: str = "",
    reenrolment_approved: bool = False,
) -> Deployment:
    now = utc_now()
    deployment = Deployment(
        id=uuid.uuid4(),
        family=row.family,
        version=row.version,
        action=action,
        canary_share=share,
        previous_version=previous,
        reenrolment_approved=reenrolment_approved,
        requested_by=requested_by,
        reason=reason[:300],
        started_at=now,
    )
    uow.session.add(deployment)
    uow.emit(
        ModelDeployed(
            deployment_id=deployment.id,
            family=row.family,
            version=row.version,
            action=action,
            canary_share=share,
            files=registry.pack_files(row),
            previous_version=previous,
            embedding_space=row.embedding_space,
            reenrolment_approved=reenrolment_approved,
            deployed_at=now,
        )
    )
    return deployment


def _retire(row: ModelVersion) -> None:
    row.status = "retired"
    row.retired_at = utc_now()


async def deploy(
    uow: UnitOfWork,
    *,
    family: str,
    version: str,
    canary_share: float,
    requested_by: str,
    reenrolment_approved: bool = False,
) -> Deployment:
    """Serve ``version`` on ``canary_share`` of the instances (all of them at 1.0)."""
    session = uow.session
    state = await _state(session, family)
    row = await registry.get(session, family=family, version=version, for_update=True)
    if row.status not in registry.DEPLOYABLE:
        raise RegistryError(f"{family} {version} is {row.status}: only a verified version is deployed")
    if version in (state.stable_version, state.canary_version):
        raise RegistryError(f"{family} {version} is already deployed")
    if state.canary_version is not None:
        raise RegistryError(f"{family} has a canary ({state.canary_version}): promote or roll it back first")
    if family == "face" and row.embedding_space and not reenrolment_approved:
        current = await registry.find(session, family=family, version=state.stable_version or "")
        if current is not None and current.embedding_space and current.embedding_space != row.embedding_space:
            raise RegistryError(
                f"{version} maps faces into {row.embedding_space}, the enrolled vectors are in "
                f"{current.embedding_space}: deploy it with an approved re-enrolment plan",
                status=422,
            )
    previous = state.stable_version
    deployment = _announce(
        uow,
        row=row,
        action="deploy",
        share=canary_share,
        previous=previous,
        requested_by=requested_by,
        reenrolment_approved=reenrolment_approved,
    )
    row.status = "deployed"
    row.deployed_at = deployment.started_at
    if canary_share >= 1.0:
        await _make_stable(session, state, row, deployment)
    else:
        state.canary_version = version
        state.canary_deployment_id = deployment.id
    state.updated_at = deployment.started_at
    return deployment


async def _make_stable(session: AsyncSession, state: FamilyState, row: ModelVersion, deployment: Deployment) -> None:
    old = state.stable_version
    if old is not None and old != row.version:
        old_row = await registry.find(session, family=state.family, version=old)
        if old_row is not None:
            _retire(old_row)
        state.previous_version = old
    state.stable_version = row.version
    state.stable_deployment_id = deployment.id
    state.canary_version = None
    state.canary_deployment_id = None


async def promote(uow: UnitOfWork, *, family: str, requested_by: str) -> Deployment:
    """The canary goes to every instance (a new ModelDeployed with share 1.0)."""
    session = uow.session
    state = await _state(session, family)
    if state.canary_version is None:
        raise RegistryError(f"{family} has no canary to promote")
    row = await registry.get(session, family=family, version=state.canary_version, for_update=True)
    deployment = _announce(
        uow, row=row, action="promote", share=1.0, previous=state.stable_version, requested_by=requested_by
    )
    await _make_stable(session, state, row, deployment)
    state.updated_at = deployment.started_at
    return deployment


async def rollback(uow: UnitOfWork, *, family: str, requested_by: str, reason: str = "") -> Deployment:
    """Back to the version before: the stable one while a canary runs, else the previous
    stable version."""
    session = uow.session
    state = await _state(session, family)
    if state.canary_version is not None:
        if state.stable_version is None:
            raise RegistryError(f"{family} has no version to go back to before its canary")
        leaving, target, new_previous = state.canary_version, state.stable_version, state.previous_version
    else:
        if state.stable_version is None or state.previous_version is None:
            raise RegistryError(f"{family} has no previous version to roll back to")
        leaving, target = state.stable_version, state.previous_version
        before_target = await session.scalar(
            select(Deployment.previous_version)
            .where(Deployment.family == family, Deployment.version == target, Deployment.action != "rollback")
            .order_by(Deployment.started_at.desc())
            .limit(1)
        )
        new_previous = before_target if before_target != leaving else None
    target_row = await registry.get(session, family=family, version=target, for_update=True)
    leaving_row = await registry.get(session, family=family, version=leaving, for_update=True)
    deployment = _announce(
        uow,
        row=target_row,
        action="rollback",
        share=1.0,
        previous=leaving,
        requested_by=requested_by,
        reason=reason,
        reenrolment_approved=family == "face",
    )
    _retire(leaving_row)
    target_row.status = "deployed"
    target_row.retired_at = None
    state.stable_version = target
    state.stable_deployment_id = deployment.id
    state.previous_version = new_previous
    state.canary_version = None
    state.canary_deployment_id = None
    state.updated_at = deployment.started_at
    return deployment


@dataclass(frozen=True)
class DeployedView:
    family: str
    stable: Deployment | None
    stable_row: ModelVersion | None
    canary: Deployment | None
    canary_row: ModelVersion | None
    previous_version: str | None


async def deployed(session: AsyncSession, *, family: str) -> DeployedView:
    """What instances of ``family`` should serve now (read by instances as they start)."""
    state = await session.get(FamilyState, family)
    if state is None:
        return DeployedView(family, None, None, None, None, None)
    stable = await session.get(Deployment, state.stable_deployment_id) if state.stable_deployment_id else None
    canary = await session.get(Deployment, state.canary_deployment_id) if state.canary_deployment_id else None
    stable_row = await registry.find(session, family=family, version=stable.version) if stable else None
    canary_row = await registry.find(session, family=family, version=canary.version) if canary else None
    return DeployedView(family, stable, stable_row, canary, canary_row, state.previous_version)


async def history(session: AsyncSession, *, family: str, limit: int = 100) -> Sequence[Deployment]:
    query = select(Deployment).where(Deployment.family == family).order_by(Deployment.started_at.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def reports(session: AsyncSession, *, deployment_id: uuid.UUID) -> Sequence[SwapReport]:
    query = select(SwapReport).where(SwapReport.deployment_id == deployment_id).order_by(SwapReport.instance_id)
    return (await session.scalars(query)).all()


async def record_swap(session: AsyncSession, *, event: ModelSwapReported) -> None:
    """Keep the latest answer of each instance to each deployment (a replay is harmless)."""
    row = await session.get(SwapReport, (event.deployment_id, event.instance_id), with_for_update=True)
    if row is None:
        row = SwapReport(deployment_id=event.deployment_id, instance_id=event.instance_id)
        session.add(row)
    elif row.reported_at > event.reported_at:
        return  # an older report arriving late
    row.family = event.family
    row.version = event.version
    row.outcome = event.outcome
    row.reason = event.reason
    row.active_version = event.active_version
    row.load_ms = event.load_ms
    row.swap_ms = event.swap_ms
    row.reported_at = event.reported_at


async def record_signal(uow: UnitOfWork, *, event: ModelSignalReported, bounds: CanaryBounds) -> CanaryJudgement | None:
    """Keep the signal, then judge the family's canary; a worse one is rolled back here, in
    the same transaction."""
    session = uow.session
    session.add(
        ModelSignal(
            family=event.family,
            version=event.version,
            instance_id=event.instance_id,
            window_started_at=event.window_started_at,
            window_ended_at=event.window_ended_at,
            samples=event.samples,
            bad=event.bad,
        )
    )
    await session.flush()
    judgement = await judge_canary(session, family=event.family, bounds=bounds)
    if judgement is not None and judgement.worse:
        await rollback(
            uow,
            family=event.family,
            requested_by=AUTOMATIC,
            reason=(
                f"canary bad-rate {judgement.canary_rate:.3f} over {judgement.canary_samples} vs "
                f"{judgement.baseline_rate:.3f} over {judgement.baseline_samples}"
            ),
        )
    return judgement


async def _totals(session: AsyncSession, *, family: str, version: str, since: datetime) -> tuple[int, int]:
    bad, samples = (
        await session.execute(
            select(func.coalesce(func.sum(ModelSignal.bad), 0), func.coalesce(func.sum(ModelSignal.samples), 0)).where(
                ModelSignal.family == family,
                ModelSignal.version == version,
                ModelSignal.window_started_at >= since,
            )
        )
    ).one()
    return int(bad), int(samples)


async def judge_canary(session: AsyncSession, *, family: str, bounds: CanaryBounds) -> CanaryJudgement | None:
    """Canary vs stable over the windows since the canary started (the same period for
    both, so a busy hour or a bad day weighs on both alike). None without a canary."""
    state = await session.get(FamilyState, family, with_for_update=True)
    if state is None or state.canary_version is None or state.canary_deployment_id is None:
        return None
    deployment = await session.get(Deployment, state.canary_deployment_id)
    if deployment is None:
        return None
    since = deployment.started_at
    canary_bad, canary_samples = await _totals(session, family=family, version=state.canary_version, since=since)
    baseline_bad, baseline_samples = 0, 0
    if state.stable_version is not None:
        baseline_bad, baseline_samples = await _totals(
            session, family=family, version=state.stable_version, since=since
        )
    decided = canary_samples >= bounds.min_samples and baseline_samples >= bounds.min_samples
    worse = False
    if decided:
        worse = canary_bad / canary_samples - baseline_bad / baseline_samples > bounds.max_worsening
    return CanaryJudgement(
        canary_version=state.canary_version,
        canary_bad=canary_bad,
        canary_samples=canary_samples,
        baseline_version=state.stable_version,
        baseline_bad=baseline_bad,
        baseline_samples=baseline_samples,
        worse=worse,
        decided=decided,
    )
