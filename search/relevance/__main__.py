"""``python -m search.relevance build | run [ELASTICSEARCH_URL]``."""

from __future__ import annotations

import asyncio
import json
import sys
from importlib import resources
from pathlib import Path

from search.relevance import QUERIES_FILE, Scores, build, evaluate, evaluate_embedded
from search.settings import SearchSettings


async def evaluate_elasticsearch(url: str) -> Scores:
    from search.backends.elastic import ElasticsearchBackend

    settings = SearchSettings(
        search_backend="elasticsearch", elasticsearch_url=url, elasticsearch_index_prefix="smartgym-relevance"
    )
    backend = ElasticsearchBackend(settings)
    await backend.start()
    try:
        return await evaluate(backend)
    finally:
        for index in await backend.live_indices():
            await backend.client.indices.delete(index=index, ignore_unavailable=True)
        await backend.close()


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "run"
    if command == "build":
        items = build()
        target = Path(str(resources.files("search.relevance").joinpath(QUERIES_FILE)))
        target.write_text(json.dumps(items, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        empty = [item["q"] for item in items if not item["judged"]]
        print(f"wrote {len(items)} queries to {target}; without relevant branches: {empty}")
        return 0
    scores = asyncio.run(evaluate_elasticsearch(argv[1]) if len(argv) > 1 else evaluate_embedded())
    for query, ndcg, recall in scores.per_query:
        print(f"{ndcg:5.2f} {recall:5.2f}  {query}")
    print(
        json.dumps(
            {
                "backend": scores.backend,
                "queries": scores.queries,
                "ndcg_at_10": round(scores.ndcg_at_10, 4),
                "recall_at_10": round(scores.recall_at_10, 4),
                "ndcg_ko": round(scores.ndcg_ko, 4),
                "ndcg_en": round(scores.ndcg_en, 4),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
