"""``smartgym mlops …``: the operations dashboard's actions from a shell.

Commands work on mlops' database directly (settings from SMARTGYM_*). Those that change
what is served write their ``ModelDeployed`` / ``TrainingRequested`` into mlops' outbox
in the same transaction; the running mlops service's relay publishes them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from common.db import Database, kernel_tables_of
from common.events.outbox import UnitOfWork
from mlops import deploys, registry, runs
from mlops.models import Base
from mlops.packs import pack_store, upload_pack
from mlops.registry import RegistryError
from mlops.settings import MlopsSettings

T = TypeVar("T")
FAMILY = click.Choice(["face", "task_judge"])


def _run(action: Callable[[Database, MlopsSettings], Awaitable[T]]) -> T:
    settings = MlopsSettings()

    async def main() -> T:
        database = Database(settings.database_url("mlops"), pool_size=2)
        try:
            return await action(database, settings)
        finally:
            await database.dispose()

    try:
        return asyncio.run(main())
    except RegistryError as exc:
        raise click.ClickException(exc.reason) from exc


def _uow(database: Database) -> UnitOfWork:
    # The service's relay publishes what lands in the outbox (it polls it).
    return UnitOfWork(database, kernel_tables_of(Base.metadata), lambda: None)


def _echo(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@click.group("mlops")
def mlops() -> None:
    """Model registry, training runs and deployments."""


@mlops.command("list")
@click.option("--family", type=FAMILY, default=None)
@click.option("--status", "status_", default=None, help="candidate, verified, rejected, deployed or retired.")
def list_versions(family: str | None, status_: str | None) -> None:
    """The registered versions, newest first."""

    async def action(database: Database, _settings: MlopsSettings) -> None:
        async with database.transaction() as session:
            for row in await registry.versions(session, family=family, status=status_):
                accuracy = row.metrics.get("heldout_accuracy", "")
                click.echo(f"{row.family}\t{row.version}\t{row.status}\t{accuracy}\t{row.created_at:%Y-%m-%d %H:%M}")

    _run(action)


@mlops.command()
@click.argument("family", type=FAMILY)
def history(family: str) -> None:
    """The deployments of a family (deploy, promote, rollback), newest first."""

    async def action(database: Database, _settings: MlopsSettings) -> None:
        async with database.transaction() as session:
            for row in await deploys.history(session, family=family):
                reports = await deploys.reports(session, deployment_id=row.id)
                serving = sum(1 for report in reports if report.outcome == "serving")
                click.echo(
                    f"{row.started_at:%Y-%m-%d %H:%M:%S}\t{row.action}\t{row.version}\tshare {row.canary_share:g}"
                    f"\t{serving}/{len(reports)} serving\t{row.requested_by}\t{row.reason}"
                )

    _run(action)


@mlops.command()
@click.argument("family", type=FAMILY)
def train(family: str) -> None:
    """Queue a training run (the worker takes it)."""

    async def action(database: Database, _settings: MlopsSettings) -> uuid.UUID:
        async with _uow(database) as uow:
            run = await runs.start_training(uow, family=family, requested_by="cli")
        return run.id

    click.echo(f"queued run {_run(action)}")


@mlops.command()
@click.argument("family", type=FAMILY)
@click.argument("version")
def verify(family: str, version: str) -> None:
    """Queue the verification of a candidate (the worker runs the family's gate)."""

    async def action(database: Database, _settings: MlopsSettings) -> uuid.UUID:
        async with _uow(database) as uow:
            await registry.get(uow.session, family=family, version=version)
            run = await runs.queue_run(
                uow, family=family, kind="verify", trigger="operator", requested_by="cli", version=version
            )
        return run.id

    click.echo(f"queued run {_run(action)}")


@mlops.command()
@click.argument("family", type=FAMILY)
@click.argument("version")
@click.option("--canary-share", type=click.FloatRange(0, 1, min_open=True), default=None)
@click.option("--reenrolment-approved", is_flag=True, help="Face packs in a new embedding space only.")
def deploy(family: str, version: str, canary_share: float | None, reenrolment_approved: bool) -> None:
    """Deploy a verified version to a canary share (1.0: everywhere)."""

    async def action(database: Database, settings: MlopsSettings) -> uuid.UUID:
        async with _uow(database) as uow:
            row = await deploys.deploy(
                uow,
                family=family,
                version=version,
                canary_share=canary_share if canary_share is not None else settings.mlops_canary_share,
                requested_by="cli",
                reenrolment_approved=reenrolment_approved,
            )
        return row.id

    click.echo(f"deployment {_run(action)} published")


@mlops.command()
@click.argument("family", type=FAMILY)
def promote(family: str) -> None:
    """The canary goes to every instance."""

    async def action(database: Database, _settings: MlopsSettings) -> uuid.UUID:
        async with _uow(database) as uow:
            return (await deploys.promote(uow, family=family, requested_by="cli")).id

    click.echo(f"deployment {_run(action)} published")


@mlops.command()
@click.argument("family", type=FAMILY)
@click.option("--reason", default="", help="Recorded with the rollback.")
def rollback(family: str, reason: str) -> None:
    """Back to the version before (the stable one while a canary runs)."""

    async def action(database: Database, _settings: MlopsSettings) -> str:
        async with _uow(database) as uow:
            row = await deploys.rollback(uow, family=family, requested_by="cli", reason=reason)
            return f"{row.id} back to {row.version}"

    click.echo(f"rollback {_run(action)} published")


@mlops.command()
@click.argument("run_id", type=click.UUID, required=False)
def progress(run_id: uuid.UUID | None) -> None:
    """One training run in detail, or the latest runs."""

    async def action(database: Database, _settings: MlopsSettings) -> None:
        async with database.transaction() as session:
            if run_id is not None:
                run = await runs.get_run(session, run_id=run_id)
                _echo(
                    {
                        "run_id": run.id,
                        "family": run.family,
                        "kind": run.kind,
                        "status": run.status,
                        "step": run.step,
                        "progress": run.progress,
                        "version": run.version,
                        "attempts": run.attempts,
                        "result": run.result,
                        "error": run.error,
                    }
                )
                return
            for run in await runs.list_runs(session):
                click.echo(
                    f"{run.id}\t{run.family}\t{run.kind}\t{run.status}\t{run.step}\t{run.progress:.0%}"
                    f"\t{run.version or ''}"
                )

    _run(action)


@mlops.command()
@click.argument("run_id", type=click.UUID)
def cancel(run_id: uuid.UUID) -> None:
    """Cancel a queued or running run (a running one stops at its next step)."""

    async def action(database: Database, _settings: MlopsSettings) -> str:
        async with database.transaction() as session:
            return (await runs.cancel(session, run_id=run_id)).status

    click.echo(f"run {run_id}: {_run(action)}")


@mlops.command()
@click.argument("family", type=FAMILY)
@click.argument("version")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--embedding-space", default=None, help="Face packs: the space their embeddings live in.")
@click.option("--parent", "parent_version", default=None, help="The version this one derives from.")
def register(
    family: str, version: str, directory: Path, embedding_space: str | None, parent_version: str | None
) -> None:
    """Register a pack built elsewhere (e.g. a face pack) as a candidate: its files go to
    the pack store; `verify` runs its gate."""

    files = [(path.name, path.read_bytes()) for path in sorted(directory.iterdir()) if path.is_file()]
    if not files:
        raise click.ClickException(f"{directory} holds no files")

    async def action(database: Database, settings: MlopsSettings) -> None:
        store = pack_store(settings)
        try:
            async with database.transaction() as session:
                if await registry.find(session, family=family, version=version) is not None:
                    raise RegistryError(f"{family} {version} exists already")
            described = await upload_pack(store, family=family, version=version, files=files)
            async with database.transaction() as session:
                await registry.register(
                    session,
                    family=family,
                    version=version,
                    files=described,
                    code_version=settings.mlops_code_version,
                    parent_version=parent_version,
                    embedding_space=embedding_space,
                )
        finally:
            await store.close()

    _run(action)
    click.echo(f"registered {family} {version} as a candidate")
