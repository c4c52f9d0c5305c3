"""The Elasticsearch backend's wire behaviour, against an Elasticsearch-8 REST emulator
run as a local process: template, alias, bulk, BM25 with boosts and fuzzy terms, filters,
geo_distance, highlights, and a rebuild that swaps the alias."""

from __future__ import annotations

from typing import Any

import pytest

from search.backends.base import BranchDoc, GeoFilter, SearchRequest
from search.backends.elastic import ElasticsearchBackend
from search.settings import SearchSettings
from search.text import analyze_query_words
from tests.support.elasticsearch import elasticsearch_emulator


def doc(branch_id: str, name: str, **fields) -> BranchDoc:
    values: dict[str, Any] = {
        "branch_id": branch_id,
        "version": 1,
        "name": name,
        "address": "서울 강남구",
        "description": "",
        "lat": 37.4979,
        "lon": 127.0276,
        "open_24h": False,
        "weekly_hours": [],
        "facilities": [],
        "tags": [],
        "keywords": [],
        "monthly_price_krw": 50_000,
        "day_pass_krw": None,
        "rating_avg": 4.0,
        "review_count": 10,
        "photos_count": 0,
        "review_sample": [],
    }
    values.update(fields)
    return BranchDoc(**values)


@pytest.fixture(scope="module")
def es_url(tmp_path_factory):
    with elasticsearch_emulator(tmp_path_factory.mktemp("noida")) as url:
        yield url


@pytest.fixture
async def backend(es_url, request):
    prefix = "t" + request.node.name.replace("_", "")[-20:].lower()
    settings = SearchSettings(
        environment="test", search_backend="elasticsearch", elasticsearch_url=es_url, elasticsearch_index_prefix=prefix
    )
    engine = ElasticsearchBackend(settings)
    await engine.start()
    yield engine
    for index in await engine.live_indices():
        await engine.client.indices.delete(index=index, ignore_unavailable=True)
    await engine.close()


DOCS = [
    doc("gn", "스마트짐 강남역점", description="24시간 샤워실 완비", open_24h=True, facilities=["shower"]),
    doc(
        "yk",
        "Iron Garden Yeoksam",
        description="Quiet gym with squat racks",
        lat=37.5006,
        lon=127.0364,
        facilities=["squat_rack", "shower"],
        tags=["quiet"],
        monthly_price_krw=80_000,
    ),
    doc(
        "hd",
        "Hongdae Fitness",
        description="Big gym with squat racks",
        lat=37.5572,
        lon=126.9245,
        facilities=["squat_rack"],
        rating_avg=3.1,
    ),
]


async def test_template_alias_and_pre_analysed_korean(backend):
    await backend.upsert(DOCS)
    assert await backend.count() == 3
    [index] = await backend.live_indices()
    assert index.startswith(f"{backend.alias}-")
    template = await backend.client.indices.get_index_template(name=backend.alias)
    assert template["index_templates"][0]["index_template"]["index_patterns"] == [f"{backend.prefix}-branches-*"]
    hits = await backend.search(SearchRequest(terms=analyze_query_words(["강남"])))
    assert next(hit.doc.branch_id for hit in hits) == "gn"  # 강남 finds 강남역점 through its bigrams


async def test_fuzzy_boosts_filters_geo_and_highlights(backend):
    await backend.upsert(DOCS)
    fuzzy = await backend.search(SearchRequest(terms=["gardn"], words=["gardn"]))
    assert [hit.doc.branch_id for hit in fuzzy] == ["yk"]
    squat = await backend.search(SearchRequest(terms=["squat"], words=["squat"], facilities=["squat_rack"]))
    assert {hit.doc.branch_id for hit in squat} == {"yk", "hd"}
    assert any("<em>" in snippet for hit in squat for snippet in hit.highlights.get("description", []))
    near = await backend.search(SearchRequest(terms=[], geo=GeoFilter(37.4979, 127.0276, 2_000)))
    assert {hit.doc.branch_id for hit in near} == {"gn", "yk"}
    filtered = await backend.search(SearchRequest(terms=[], open_24h=True, price_max_krw=60_000))
    assert [hit.doc.branch_id for hit in filtered] == ["gn"]
    rated = await backend.search(SearchRequest(terms=[], rating_min=3.5, tags=["quiet"]))
    assert next(hit.doc.branch_id for hit in rated) == "yk"
    assert {hit.doc.branch_id for hit in rated} == {"gn", "yk"}


async def test_rebuild_swaps_the_alias_to_a_complete_new_index(backend):
    await backend.upsert(DOCS)
    [old] = await backend.live_indices()
    replaced = [doc("gn", "스마트짐 강남역점", version=2), doc("new", "New Gym Seocho")]
    assert await backend.rebuild(replaced) == 2
    [new] = await backend.live_indices()
    assert new != old
    assert not await backend.client.indices.exists(index=old)
    assert {d.branch_id for d in await backend.all_docs()} == {"gn", "new"}
    assert (await backend.get(["gn"]))["gn"].version == 2
    await backend.delete(["new", "never-indexed"])
    assert await backend.count() == 1
