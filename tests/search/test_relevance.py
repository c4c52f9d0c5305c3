"""The shared relevance suite: the seeded corpus, 60+ judged queries (half Korean, half
English; typos, places, facilities, hours), nDCG@10 and recall@10 through the hot path.
Always on the embedded engine; on a real cluster too when SMARTGYM_ELASTICSEARCH_URL is set."""

from __future__ import annotations

import os
import uuid

import pytest

from search.relevance import evaluate, evaluate_embedded, load
from search.settings import SearchSettings

FLOOR_NDCG = 0.8
FLOOR_RECALL = 0.8


def test_the_set_is_large_bilingual_and_judged():
    items = load()
    assert len(items) >= 60
    korean = sum(1 for item in items if item["lang"] == "ko")
    assert abs(korean - (len(items) - korean)) <= 4
    assert all(item["judged"] for item in items)


async def test_embedded_engine_meets_the_floor():
    scores = await evaluate_embedded()
    worst = sorted(scores.per_query, key=lambda item: item[1])[:5]
    assert scores.ndcg_at_10 >= FLOOR_NDCG, worst
    assert scores.recall_at_10 >= FLOOR_RECALL, worst
    assert min(scores.ndcg_ko, scores.ndcg_en) >= FLOOR_NDCG


@pytest.mark.skipif(not os.environ.get("SMARTGYM_ELASTICSEARCH_URL"), reason="needs a real Elasticsearch cluster")
async def test_elasticsearch_meets_the_floor():
    from search.backends.elastic import ElasticsearchBackend

    settings = SearchSettings(
        environment="test",
        search_backend="elasticsearch",
        elasticsearch_url=os.environ["SMARTGYM_ELASTICSEARCH_URL"],
        elasticsearch_index_prefix=f"relevance-{uuid.uuid4().hex[:8]}",
    )
    backend = ElasticsearchBackend(settings)
    await backend.start()
    try:
        scores = await evaluate(backend)
    finally:
        for index in await backend.live_indices():
            await backend.client.indices.delete(index=index, ignore_unavailable=True)
        await backend.close()
    assert scores.ndcg_at_10 >= FLOOR_NDCG
    assert scores.recall_at_10 >= FLOOR_RECALL
