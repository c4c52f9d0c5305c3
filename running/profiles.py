"""Runner profiles: the name shown on boards and the heart rates zones are computed from.

Without a stated maximum the estimate is the highest plausible rate seen in the runner's
recent runs, once there are enough of them that a hard effort is likely among them;
before that, the generic 190."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.events.envelope import utc_now
from common.kernel import ServiceKernel
from running.analysis import DEFAULT_MAX_HR, HeartRates
from running.errors import Conflict
from running.models import Run, RunnerProfile
from running.nearby import PrivacyZone

HISTORY_RUNS = 50  # the most recent runs the estimate looks at
HISTORY_MIN_RUNS = 3  # fewer and a peak is more likely an easy day than a real maximum
PLAUSIBLE_MAX_HR = (130, 230)


async def heart_rates(session: AsyncSession, *, user: uuid.UUID) -> HeartRates:
    profile = await session.get(RunnerProfile, user)
    if profile is not None and profile.max_hr is not None:
        return HeartRates(profile.max_hr, profile.resting_hr, "profile")
    resting = profile.resting_hr if profile is not None else None
    summaries = await session.scalars(
        select(Run.summary)
        .where(Run.user_id == user, Run.status == "finished")
        .order_by(Run.started_at.desc())
        .limit(HISTORY_RUNS)
    )
    peaks = [int(hr["max"]) for summary in summaries if (hr := (summary or {}).get("heart_rate")) and hr.get("max")]
    plausible = [peak for peak in peaks if PLAUSIBLE_MAX_HR[0] <= peak <= PLAUSIBLE_MAX_HR[1]]
    if len(plausible) >= HISTORY_MIN_RUNS:
        return HeartRates(max(plausible), resting, "history")
    return HeartRates(DEFAULT_MAX_HR, resting, "default")


class ProfileService:
    def __init__(self, *, kernel: ServiceKernel) -> None:
        self._kernel = kernel

    async def profile(self, *, user: uuid.UUID) -> dict[str, Any]:
        async with self._kernel.db.sessions() as session:
            found = await session.get(RunnerProfile, user)
            heart = await heart_rates(session, user=user)
        return {
            "display_name": found.display_name if found else None,
            "max_hr": found.max_hr if found else None,
            "resting_hr": found.resting_hr if found else None,
            "nearby_opt_in": bool(found and found.nearby_opt_in),
            "privacy_zones": (found.privacy_zones or []) if found else [],
            "zones": {"max_hr": heart.max_hr, "resting_hr": heart.resting_hr, "from": heart.source},
        }

    async def update_profile(
        self,
        *,
        user: uuid.UUID,
        display_name: str | None,
        max_hr: int | None,
        resting_hr: int | None,
        nearby_opt_in: bool = False,
        privacy_zones: list[dict[str, float]] | None = None,
    ) -> dict[str, Any]:
        if max_hr is not None and resting_hr is not None and resting_hr >= max_hr - 20:
            raise Conflict("the resting heart rate must be well below the maximum")
        async with self._kernel.db.sessions() as session, session.begin():
            found = await session.get(RunnerProfile, user)
            if found is None:
                found = RunnerProfile(user_id=user)
                session.add(found)
            found.display_name, found.max_hr, found.resting_hr = display_name, max_hr, resting_hr
            found.nearby_opt_in, found.privacy_zones = nearby_opt_in, privacy_zones or []
            found.updated_at = utc_now()
        return await self.profile(user=user)


async def display_names(session: AsyncSession, *, users: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = await session.execute(
        select(RunnerProfile.user_id, RunnerProfile.display_name).where(RunnerProfile.user_id.in_(users))
    )
    return {user: name for user, name in rows if name}


async def display_name(session: AsyncSession, *, user: uuid.UUID) -> str:
    """The name a runner chose, or a neutral one (never their account's e-mail or id)."""
    found = await session.get(RunnerProfile, user)  # the identity map serves the next get
    return (found.display_name if found else None) or f"Runner {str(user)[:4].upper()}"


async def nearby_privacy(session: AsyncSession, *, user: uuid.UUID) -> tuple[PrivacyZone, ...] | None:
    """The runner's privacy zones if they opted in to runners nearby; None if they did not."""
    found = await session.get(RunnerProfile, user)
    if found is None or not found.nearby_opt_in:
        return None
    return tuple(PrivacyZone(zone["lat"], zone["lon"], zone["radius_m"]) for zone in found.privacy_zones or [])
