"""The relevance set: generated corpus, judged queries, nDCG@10 and recall@10 per backend.

``python -m search.relevance build`` (re)writes ``queries.json`` from the seeded corpus;
``python -m search.relevance run [--backend tantivy|elasticsearch]`` scores a backend.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from search.backends.base import SearchBackend
from search.catalogue import Catalogue
from search.corpus import CorpusBranch, generate
from search.lexicon import lexicon
from search.queries import SearchContext, search
from search.ranking import distance_m, is_open
from search.relevance.spec import NAME_QUERIES, QUERIES
from search.schemas import Filters
from search.settings import SearchSettings

CORPUS_BRANCHES = 400
CORPUS_SEED = 7
# "Open now" is judged at a fixed moment: a Saturday at 21:30 in Seoul.
JUDGED_AT = datetime(2026, 1, 10, 21, 30, tzinfo=ZoneInfo("Asia/Seoul"))
QUERIES_FILE = "queries.json"


def corpus() -> list[CorpusBranch]:
    return generate(branches=CORPUS_BRANCHES, seed=CORPUS_SEED)


def judge(
    branches: Sequence[CorpusBranch], need: dict[str, Any], *, caller: tuple[float, float] | None
) -> dict[str, int]:
    """Grades from the hidden truths: 2 meets every need, 1 meets the hard ones (place,
    facilities, hours, price, rating) but lacks a wanted attribute."""
    if "branch" in need:
        # The branch asked for; its namesakes ("… II") are relevant too, less so.
        target = next(branch for branch in branches if branch.branch_id == need["branch"])
        namesakes = {branch.branch_id: 1 for branch in branches if branch.name.startswith(target.name)}
        namesakes[target.branch_id] = 2
        return namesakes
    settings = SearchSettings(environment="test")
    places = lexicon().places
    centre: tuple[float, float] | None = None
    radius = 0.0
    if need.get("place"):
        place = places[need["place"]]
        centre = (place.lat, place.lon)
        radius = settings.search_station_radius_m if place.kind == "station" else settings.search_district_radius_m
    elif need.get("near") and caller:
        centre, radius = caller, settings.search_near_me_radius_m
    grades: dict[str, int] = {}
    for branch in branches:
        if centre and distance_m(centre[0], centre[1], branch.lat, branch.lon) > radius:
            continue
        if not set(need.get("facilities", ())) <= set(branch.facilities):
            continue
        if need.get("open_24h") and not branch.open_24h:
            continue
        if need.get("open_now") and not is_open(branch.to_doc(review_sample=0), JUDGED_AT):
            continue
        if need.get("price_max") is not None and branch.monthly_price_krw > need["price_max"]:
            continue
        if need.get("rating_min") is not None and branch.rating < need["rating_min"]:
            continue
        grades[branch.branch_id] = 2 if set(need.get("attributes", ())) <= branch.truth else 1
    return grades


def _name_query(branch: CorpusBranch, lang: str) -> str:
    if lang == "ko":
        return branch.name.replace(" ", "").removesuffix("점")  # typed without spaces
    words = branch.name.lower().split()
    longest = max(range(len(words)), key=lambda index: len(words[index]))
    word = words[longest]
    words[longest] = word[:2] + word[3] + word[2] + word[4:]  # two letters swapped
    return " ".join(words)


def build() -> list[dict[str, Any]]:
    branches = corpus()
    items = [dict(item) for item in QUERIES]
    for index, lang in NAME_QUERIES:
        candidates = [branch for branch in branches if (branch.name[0] >= "가") == (lang == "ko")]
        target = candidates[index]
        items.append({"q": _name_query(target, lang), "lang": lang, "need": {"branch": target.branch_id}})
    for item in items:
        caller = (item["lat"], item["lon"]) if "lat" in item else None
        item["judged"] = judge(branches, item["need"], caller=caller)
    return items


def load() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(
        resources.files("search.relevance").joinpath(QUERIES_FILE).read_text(encoding="utf-8")
    )
    return data


def ndcg_at(ranked: Sequence[str], judged: dict[str, int], k: int = 10) -> float:
    gains = [2 ** judged.get(branch_id, 0) - 1 for branch_id in ranked[:k]]
    dcg = sum(gain / math.log2(position + 2) for position, gain in enumerate(gains))
    ideal = sorted((2**grade - 1 for grade in judged.values()), reverse=True)[:k]
    idcg = sum(gain / math.log2(position + 2) for position, gain in enumerate(ideal))
    return dcg / idcg if idcg else (1.0 if not ranked else 0.0)


def recall_at(ranked: Sequence[str], judged: dict[str, int], k: int = 10) -> float:
    """Relevant found in the top k, over what the top k could hold (min(relevant, k))."""
    relevant = {branch_id for branch_id, grade in judged.items() if grade > 0}
    if not relevant:
        return 1.0 if not ranked else 0.0
    return len(relevant & set(ranked[:k])) / min(len(relevant), k)


@dataclass
class Scores:
    backend: str
    queries: int
    ndcg_at_10: float
    recall_at_10: float
    ndcg_ko: float
    ndcg_en: float
    per_query: list[tuple[str, float, float]]


async def evaluate(backend: SearchBackend, *, branches: Sequence[CorpusBranch] | None = None) -> Scores:
    """Index the corpus into ``backend`` and score every judged query through the same
    hot path the API runs."""
    branches = branches if branches is not None else corpus()
    docs = [branch.to_doc() for branch in branches]
    await backend.rebuild(docs)
    catalogue = Catalogue()
    catalogue.replace(docs)
    context = SearchContext(backend=backend, catalogue=catalogue, settings=SearchSettings(environment="test"))
    context.ready.set()
    per_query: list[tuple[str, float, float]] = []
    by_lang: dict[str, list[float]] = {"ko": [], "en": []}
    for item in load():
        origin = (item["lat"], item["lon"]) if "lat" in item else None
        page = await search(context, query=item["q"], filters=Filters(), origin=origin, page=1, size=10, now=JUDGED_AT)
        ranked = [hit.branch_id for hit in page.hits]
        ndcg, recall = ndcg_at(ranked, item["judged"]), recall_at(ranked, item["judged"])
        per_query.append((item["q"], ndcg, recall))
        by_lang[item["lang"]].append(ndcg)
    count = len(per_query)
    return Scores(
        backend=backend.name,
        queries=count,
        ndcg_at_10=sum(score for _q, score, _r in per_query) / count,
        recall_at_10=sum(recall for _q, _s, recall in per_query) / count,
        ndcg_ko=sum(by_lang["ko"]) / max(1, len(by_lang["ko"])),
        ndcg_en=sum(by_lang["en"]) / max(1, len(by_lang["en"])),
        per_query=per_query,
    )


async def evaluate_embedded() -> Scores:
    from search.backends.embedded import TantivyBackend

    with tempfile.TemporaryDirectory() as directory:
        backend = TantivyBackend(Path(directory) / "index")
        await backend.start()
        try:
            return await evaluate(backend)
        finally:
            await backend.close()
