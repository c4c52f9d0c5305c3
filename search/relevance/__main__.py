"""``python -m search.relevance build|run``."""

from __future__ import annotations

import asyncio
import json
import sys
from importlib import resources
from pathlib import Path

from search.relevance import QUERIES_FILE, build, evaluate_embedded


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "run"
    if command == "build":
        items = build()
        target = Path(str(resources.files("search.relevance").joinpath(QUERIES_FILE)))
        target.write_text(json.dumps(items, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        empty = [item["q"] for item in items if not item["judged"]]
        print(f"wrote {len(items)} queries to {target}; without relevant branches: {empty}")
        return 0
    scores = asyncio.run(evaluate_embedded())
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
