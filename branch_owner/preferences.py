"""A branch's preference profile: facility tags from its members' reviews and its own
equipment and facilities, usage tags from when members come in (AccessGranted)."""

from __future__ import annotations

import uuid
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from branch_owner.models import Branch, EntryCount, Preference, Review
from branch_owner.settings import BranchOwnerSettings
from common.events.envelope import utc_now
from common.events.outbox import UnitOfWork
from common.kernel import ServiceKernel
from contracts import AccessGranted, BranchPreferenceCreated

# What members write, in Korean and English, and the tag it speaks for.
REVIEW_KEYWORDS: dict[str, tuple[str, ...]] = {
    "shower": ("샤워", "shower"),
    "parking": ("주차", "parking"),
    "cleanliness": ("청결", "깨끗", "clean"),
    "cardio": ("러닝머신", "트레드밀", "treadmill", "cardio", "사이클", "bike"),
    "free_weights": ("덤벨", "바벨", "프리웨이트", "dumbbell", "barbell", "free weight"),
    "sauna": ("사우나", "sauna"),
    "quiet": ("조용", "한적", "quiet"),
    "crowded": ("붐비", "혼잡", "crowded", "busy"),
    "lockers": ("락커", "사물함", "locker"),
}
# Equipment kinds (monitoring's registry vocabulary) and what they offer.
EQUIPMENT_TAGS = {
    "treadmill": "cardio",
    "bike": "cardio",
    "rower": "cardio",
    "rack": "free_weights",
    "bench": "free_weights",
    "cable": "machines",
    "machine": "machines",
}
# Local hours of each usage band.
BANDS = {
    "early_bird": range(5, 9),
    "daytime": range(9, 17),
    "evening": range(17, 22),
    "night_owl": (*range(22, 24), *range(0, 5)),
}


class Preferences:
    def __init__(self, settings: BranchOwnerSettings, *, is_sqlite: bool) -> None:
        self._settings = settings
        self._zone = ZoneInfo(settings.branch_timezone)
        self._insert = sqlite.insert if is_sqlite else postgresql.insert

    async def access_granted(self, event: AccessGranted, uow: UnitOfWork) -> None:
        if event.direction != "in" or event.member_id is None:
            return
        local = event.decided_at.astimezone(self._zone)
        key = {"branch_id": event.branch_id, "weekday": local.weekday(), "hour": local.hour}
        await uow.session.execute(self._insert(EntryCount).values(**key, entries=0).on_conflict_do_nothing())
        await uow.session.execute(
            update(EntryCount)
            .where(*(getattr(EntryCount, name) == value for name, value in key.items()))
            .values(entries=EntryCount.entries + 1)
        )

    async def derive(self, kernel: ServiceKernel, *, branch_id: str, by: uuid.UUID) -> Preference:
        """Compute the branch's tags now, keep them and publish BranchPreferenceCreated."""
        async with kernel.unit_of_work() as uow:
            session = uow.session
            branch = await session.get(Branch, branch_id)
            texts = (await session.scalars(select(Review.text).where(Review.branch_id == branch_id))).all()
            counts = (
                await session.execute(
                    select(EntryCount.weekday, EntryCount.hour, EntryCount.entries).where(
                        EntryCount.branch_id == branch_id
                    )
                )
            ).all()
            facility = self._facility_tags(branch, list(texts))
            usage = self._usage_tags([(weekday, hour, entries) for weekday, hour, entries in counts])
            preference = await session.get(Preference, branch_id)
            if preference is None:
                preference = Preference(branch_id=branch_id)
                session.add(preference)
            preference.preference_id = uuid.uuid4()
            preference.facility_tags, preference.usage_tags = facility, usage
            preference.created_by, preference.created_at = by, utc_now()
            uow.emit(
                BranchPreferenceCreated(
                    preference_id=preference.preference_id,
                    branch_id=branch_id,
                    topics=tuple((facility + usage)[:20]),
                    created_by=by,
                    facility_tags=tuple(facility[:20]),
                    usage_tags=tuple(usage[:20]),
                )
            )
        return preference

    def _facility_tags(self, branch: Branch | None, texts: list[str]) -> list[str]:
        tags: set[str] = set()
        if branch is not None:
            tags.update(facility.lower() for facility in branch.facilities if facility.lower() in REVIEW_KEYWORDS)
            tags.update(
                EQUIPMENT_TAGS[kind] for kind, count in branch.equipment.items() if count > 0 and kind in EQUIPMENT_TAGS
            )
        lowered = [text.lower() for text in texts]
        for tag, words in REVIEW_KEYWORDS.items():
            mentions = sum(any(word in text for word in words) for text in lowered)
            if mentions >= self._settings.preference_min_mentions:
                tags.add(tag)
        return sorted(tags)

    def _usage_tags(self, counts: list[tuple[int, int, int]]) -> list[str]:
        total = sum(entries for _, _, entries in counts)
        if total == 0:
            return []
        share = self._settings.preference_usage_share
        tags = [
            band
            for band, hours in BANDS.items()
            if sum(entries for _, hour, entries in counts if hour in hours) / total >= share
        ]
        # Two days of seven: a weekend tag needs clearly more than its 2/7 of entries.
        if sum(entries for weekday, _, entries in counts if weekday >= 5) / total >= 0.4:
            tags.append("weekend")
        return tags
