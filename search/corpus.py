"""A generated, seeded corpus of branches and reviews: the same seed gives the same
branches, reviews and hidden truths on every machine. The relevance set is judged
against the hidden truths (where a branch is, what it has, whether members find it
quiet), while the engine only sees what members and owners wrote."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from search.backends.base import BranchDoc
from search.keywords import extract_offline
from search.lexicon import Place, lexicon

BRANDS_KO = [
    "스마트짐",
    "아이언짐",
    "바디라인",
    "머슬팩토리",
    "파워하우스",
    "에너지핏",
    "짐박스",
    "핏앤펌프",
    "스트롱존",
    "라이프짐",
]
BRANDS_EN = [
    "Iron Garden", "Pulse Fitness", "Muscle Lab", "Core Club", "Urban Strength",
    "Blue Whale Gym", "Peak Performance", "Steel Works", "Zen Fitness", "Night Owl Gym",
]  # fmt: skip
FACILITY_ODDS = {
    "shower": 0.8, "locker": 0.7, "towels": 0.5, "parking": 0.35, "sauna": 0.15, "squat_rack": 0.5,
    "free_weights": 0.7, "cardio": 0.85, "pt": 0.6, "yoga": 0.15, "pilates": 0.12, "women_only": 0.05,
    "crossfit": 0.08, "boxing": 0.06,
}  # fmt: skip
ATTRIBUTE_ODDS = {"quiet": 0.25, "clean": 0.3, "friendly": 0.3, "new_equipment": 0.2, "spacious": 0.25}
STREETS = [
    "테헤란로",
    "강남대로",
    "양화로",
    "와우산로",
    "올림픽로",
    "세종대로",
    "을지로",
    "도산대로",
    "왕십리로",
    "마포대로",
]
GENERAL_KO = [
    "운동하기 좋아요",
    "가격 대비 괜찮습니다",
    "트레이너 선생님이 계세요",
    "기구가 다양해요",
    "위치가 좋아요",
    "재등록했어요",
]
GENERAL_EN = [
    "good place to train",
    "fair price",
    "decent machines",
    "easy to reach",
    "would sign up again",
    "ok for the money",
]
POSITIVE = {
    "quiet": (
        ["조용해서 집중이 잘 돼요", "한적하고 여유로워요", "저녁에도 조용해요"],
        ["very quiet in the evening", "calm and uncrowded", "peaceful place to lift"],
    ),
    "clean": (
        ["정말 깨끗해요", "청결 관리가 잘 돼요", "샤워실이 깔끔해요"],
        ["spotless locker room", "always clean", "tidy and well kept"],
    ),
    "friendly": (["직원분들이 친절해요", "트레이너가 친절합니다"], ["friendly staff", "helpful trainers"]),
    "new_equipment": (
        ["최신 기구가 많아요", "신형 머신이 들어왔어요"],
        ["new equipment everywhere", "modern equipment"],
    ),
    "spacious": (["넓고 쾌적해요", "공간이 널찍해요"], ["spacious floor", "roomy and bright"]),
}
NEGATIVE = {
    "quiet": (["저녁엔 너무 붐벼요", "음악이 시끄러워요"], ["crowded after work", "loud music all day"]),
    "clean": (["좀 지저분해요"], ["a bit dirty"]),
    "spacious": (["좁아요"], ["cramped at peak hours"]),
}


@dataclass
class CorpusReview:
    review_id: uuid.UUID
    member_id: uuid.UUID
    rating: int
    text: str
    posted_at: datetime


@dataclass
class CorpusBranch:
    branch_id: str
    name: str
    address: str
    description: str
    lat: float
    lon: float
    open_24h: bool
    weekly_hours: list[tuple[int, str, str]]
    facilities: list[str]
    monthly_price_krw: int
    photos_count: int
    home: str  # the gazetteer place it was placed around
    truth: set[str]  # hidden attributes (what members experience)
    reviews: list[CorpusReview] = field(default_factory=list)

    @property
    def rating(self) -> float:
        return sum(review.rating for review in self.reviews) / len(self.reviews) if self.reviews else 0.0

    def to_doc(self, *, review_sample: int = 8) -> BranchDoc:
        """The document the service would index once the cold path (offline extractor)
        has read the reviews."""
        texts = [review.text for review in sorted(self.reviews, key=lambda review: review.posted_at, reverse=True)]
        extraction = extract_offline(description=self.description, reviews=texts[:30])
        return BranchDoc(
            branch_id=self.branch_id,
            version=1,
            name=self.name,
            address=self.address,
            description=self.description,
            lat=self.lat,
            lon=self.lon,
            open_24h=self.open_24h,
            weekly_hours=self.weekly_hours,
            facilities=self.facilities,
            tags=extraction.tags,
            keywords=extraction.keywords,
            monthly_price_krw=self.monthly_price_krw,
            day_pass_krw=None,
            rating_avg=round(self.rating, 3),
            review_count=len(self.reviews),
            photos_count=self.photos_count,
            review_sample=texts[:review_sample],
        )


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _nearest_district(lat: float, lon: float, places: list[Place]) -> Place:
    districts = [place for place in places if place.kind == "district"]
    return min(districts, key=lambda place: (place.lat - lat) ** 2 + (place.lon - lon) ** 2)


def generate(*, branches: int, reviews_per_branch: tuple[int, int] = (3, 25), seed: int = 7) -> list[CorpusBranch]:
    rng = random.Random(seed)
    places = list(lexicon().places.values())
    stations = [place for place in places if place.kind == "station"]
    out: list[CorpusBranch] = []
    names: set[str] = set()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for number in range(branches):
        home = rng.choice(stations)
        # Around the station: most within ~1 km, some further out.
        distance = abs(rng.gauss(0, 900))
        bearing = rng.uniform(0, 2 * math.pi)
        lat = home.lat + distance * math.cos(bearing) / 111_320
        lon = home.lon + distance * math.sin(bearing) / (111_320 * math.cos(math.radians(home.lat)))
        korean = rng.random() < 0.5
        short_ko = home.name_ko.removesuffix("역")
        short_en = home.name_en.removesuffix(" station").title()
        name = f"{rng.choice(BRANDS_KO)} {short_ko}점" if korean else f"{rng.choice(BRANDS_EN)} {short_en}"
        while name in names:
            name = f"{name} 2호점" if korean else f"{name} II"
        names.add(name)
        facilities = sorted(tag for tag, odds in FACILITY_ODDS.items() if rng.random() < odds)
        truth = {tag for tag, odds in ATTRIBUTE_ODDS.items() if rng.random() < odds}
        open_24h = rng.random() < 0.4
        hours = [] if open_24h else [(day, "06:00", "23:00" if day < 5 else "20:00") for day in range(7)]
        district = _nearest_district(lat, lon, places)
        address = f"서울 {district.name_ko} {rng.choice(STREETS)} {rng.randint(1, 400)}"
        vocabulary = lexicon().facilities
        mentioned = [tag for tag in facilities if rng.random() < 0.6]
        if korean:
            parts = [f"{vocabulary[tag][0]}" for tag in mentioned]
            description = (", ".join(parts) + " 완비. " if parts else "") + ("24시간 운영. " if open_24h else "")
            if "quiet" in truth and rng.random() < 0.3:
                description += "조용한 분위기. "
        else:
            parts = [vocabulary[tag][1] for tag in mentioned]
            description = ("Gym with " + ", ".join(parts) + ". " if parts else "") + (
                "Open 24 hours. " if open_24h else ""
            )
            if "quiet" in truth and rng.random() < 0.3:
                description += "A quiet place. "
        latent = rng.uniform(2.6, 4.8)
        branch = CorpusBranch(
            branch_id=f"br-{number:05d}",
            name=name,
            address=address,
            description=description.strip(),
            lat=round(lat, 6),
            lon=round(lon, 6),
            open_24h=open_24h,
            weekly_hours=hours,
            facilities=facilities,
            monthly_price_krw=rng.randrange(30_000, 120_001, 1_000),
            photos_count=rng.randint(0, 30),
            home=home.id,
            truth=truth,
        )
        for index in range(rng.randint(*reviews_per_branch)):
            branch.reviews.append(_review(rng, branch, latent, start + timedelta(hours=index * 7 + number % 13)))
        out.append(branch)
    return out


def _review(rng: random.Random, branch: CorpusBranch, latent: float, posted_at: datetime) -> CorpusReview:
    korean = rng.random() < 0.6
    language = 0 if korean else 1
    sentences = [rng.choice(GENERAL_KO if korean else GENERAL_EN)]
    for tag in sorted(branch.truth):
        if rng.random() < 0.45:
            sentences.append(rng.choice(POSITIVE[tag][language]))
    for tag, phrases in NEGATIVE.items():
        if tag not in branch.truth and rng.random() < 0.2:
            sentences.append(rng.choice(phrases[language]))
    rng.shuffle(sentences)
    rating = max(1, min(5, round(rng.gauss(latent, 0.7))))
    return CorpusReview(_uuid(rng), _uuid(rng), rating, (". " if not korean else " ").join(sentences), posted_at)


def iter_reviews(branches: list[CorpusBranch]) -> Iterator[tuple[str, CorpusReview]]:
    for branch in branches:
        for review in branch.reviews:
            yield branch.branch_id, review
