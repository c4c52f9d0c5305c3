"""Training analytics from a runner's finished runs: weekly volume, the acute:chronic
load ratio, race-time predictions (Riegel) and shoes with their mileage.

Load is moving minutes, weighted by how hard the heart worked when a run has heart rate
(average as a share of the runner's maximum, relative to an easy 70 %): simple, and
comparable across runs with and without a strap."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select

from common.events.envelope import utc_now
from common.kernel import ServiceKernel
from running.errors import NotFound
from running.models import Run, Shoe
from running.profiles import heart_rates

RIEGEL_EXPONENT = 1.06
PREDICT = {"5k": 5000.0, "10k": 10000.0, "half": 21097.5, "marathon": 42195.0}
PREDICTION_WINDOW = timedelta(days=90)
EASY_SHARE = 0.70


def riegel(seconds: float, distance_m: float, target_m: float) -> float:
    """Riegel's endurance model: T2 = T1 x (D2 / D1) ^ 1.06."""
    return float(seconds * (target_m / distance_m) ** RIEGEL_EXPONENT)


def acwr_zone(ratio: float | None) -> str:
    if ratio is None:
        return "not enough history"
    if ratio < 0.8:
        return "below your usual load"
    if ratio <= 1.3:
        return "sweet spot"
    if ratio <= 1.5:
        return "building fast"
    return "injury risk: much more than usual"


class AnalyticsService:
    def __init__(self, *, kernel: ServiceKernel) -> None:
        self._kernel = kernel

    async def analytics(self, *, user: uuid.UUID, day: date, weeks: int) -> dict[str, Any]:
        end = datetime.combine(day + timedelta(days=1), time(), tzinfo=utc_now().tzinfo)
        first_week = day - timedelta(days=day.weekday()) - timedelta(weeks=weeks - 1)
        since = min(datetime.combine(first_week, time(), tzinfo=end.tzinfo), end - timedelta(days=90))
        async with self._kernel.db.sessions() as session:
            runs = (
                await session.scalars(
                    select(Run).where(
                        Run.user_id == user, Run.status == "finished", Run.started_at >= since, Run.started_at < end
                    )
                )
            ).all()
            heart = await heart_rates(session, user=user)
        volume = {first_week + timedelta(weeks=index): {"distance_m": 0.0, "moving_s": 0.0, "runs": 0}
                  for index in range(weeks)}  # fmt: skip
        for run in runs:
            started = run.started_at.date()
            week = started - timedelta(days=started.weekday())
            if week in volume:
                volume[week]["distance_m"] += run.distance_m
                volume[week]["moving_s"] += run.moving_s
                volume[week]["runs"] += 1

        def load(run: Run) -> float:
            minutes = run.moving_s / 60
            average = ((run.summary or {}).get("heart_rate") or {}).get("average")
            return minutes * (average / heart.max_hr / EASY_SHARE if average else 1.0)

        acute = sum(load(run) for run in runs if run.started_at >= end - timedelta(days=7))
        chronic_total = sum(load(run) for run in runs if run.started_at >= end - timedelta(days=28))
        chronic = chronic_total / 4
        ratio = round(acute / chronic, 2) if chronic > 0 else None

        recent = [run for run in runs if run.started_at >= end - PREDICTION_WINDOW]
        basis: dict[str, Any] | None = None
        for run in recent:  # the longest recent best effort predicts best (the least extrapolation)
            for distance, seconds in ((run.summary or {}).get("best_efforts_s") or {}).items():
                metres = float(distance)
                if (
                    basis is None
                    or metres > basis["distance_m"]
                    or (metres == basis["distance_m"] and seconds < basis["moving_s"])
                ):
                    basis = {"distance_m": metres, "moving_s": float(seconds), "run_id": str(run.run_id)}
        predictions = (
            {name: round(riegel(basis["moving_s"], basis["distance_m"], metres)) for name, metres in PREDICT.items()}
            if basis
            else {}
        )
        return {
            "weekly_volume": [
                {
                    "week": week.isoformat(),
                    "distance_m": round(values["distance_m"], 1),
                    "moving_s": round(values["moving_s"], 1),
                    "runs": values["runs"],
                }
                for week, values in sorted(volume.items())
            ],
            "load": {
                "acute_7d": round(acute, 1),
                "chronic_28d_weekly": round(chronic, 1),
                "ratio": ratio,
                "zone": acwr_zone(ratio),
            },
            "predictions_s": predictions,
            "prediction_basis": basis,
        }

    # -- shoes ------------------------------------------------------------------------------

    async def add_shoe(self, *, user: uuid.UUID, name: str, retire_at_km: float) -> dict[str, Any]:
        shoe = Shoe(
            shoe_id=uuid.uuid4(),
            user_id=user,
            name=name,
            retire_at_km=retire_at_km,
            retired=False,
            created_at=utc_now(),
        )
        async with self._kernel.db.sessions() as session, session.begin():
            session.add(shoe)
        return (await self.shoes(user=user, shoe_id=shoe.shoe_id))[0]

    async def shoes(self, *, user: uuid.UUID, shoe_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
        async with self._kernel.db.sessions() as session:
            query = select(Shoe).where(Shoe.user_id == user)
            if shoe_id is not None:
                query = query.where(Shoe.shoe_id == shoe_id)
            shoes = (await session.scalars(query.order_by(Shoe.created_at))).all()
            rows = await session.execute(
                select(Run.shoe_id, func.sum(Run.distance_m), func.count())
                .where(Run.user_id == user, Run.status == "finished", Run.shoe_id.is_not(None))
                .group_by(Run.shoe_id)
            )
            mileage = {shoe: (float(metres or 0.0), int(count)) for shoe, metres, count in rows}
        out = []
        for shoe in shoes:
            metres, count = mileage.get(shoe.shoe_id, (0.0, 0))
            km = round(metres / 1000, 2)
            out.append({
                "shoe_id": str(shoe.shoe_id),
                "name": shoe.name,
                "km": km,
                "runs": count,
                "retire_at_km": shoe.retire_at_km,
                "worn_out": km >= shoe.retire_at_km,
                "retired": shoe.retired,
            })  # fmt: skip
        return out

    async def wear(self, *, user: uuid.UUID, run_id: uuid.UUID, shoe_id: uuid.UUID | None) -> None:
        """Say which pair a run was in (or none)."""
        async with self._kernel.db.sessions() as session, session.begin():
            run = await session.get(Run, run_id)
            if run is None or run.user_id != user:
                raise NotFound("no such run of yours")
            if shoe_id is not None:
                shoe = await session.get(Shoe, shoe_id)
                if shoe is None or shoe.user_id != user:
                    raise NotFound("no such shoe of yours")
            run.shoe_id = shoe_id
