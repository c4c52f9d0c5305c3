"""The production engine: an Elasticsearch 8 cluster shared by every replica.

- An index template fixes the mapping of every ``<prefix>-branches-*`` index; searches
  and writes go through the alias ``<prefix>-branches``, never an index name.
- A rebuild creates a new index, bulk-loads it, then moves the alias in one atomic
  ``_aliases`` call and drops the old index: searches never see a half-built index.
- Bulk writes retry rejected documents (429) with back-off; a write returns once the
  documents are searchable (``refresh=wait_for``).
- Korean needs no plugin: the service sends the same pre-analysed terms it gives
  tantivy (``*_t`` fields, whitespace analyser). The raw name and description are kept
  with the standard analyser for highlighting.
- Scoring is BM25 with field boosts and fuzzy matching; geography is a
  ``geo_distance`` filter plus a distance sort as tie-breaker.

The client's major version is pinned to the cluster's (8): a 9.x client sends
``compatible-with=9`` headers an 8.x cluster refuses.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from elasticsearch import AsyncElasticsearch, NotFoundError
from elasticsearch.helpers import async_bulk, async_scan

from search.backends.base import BOOSTS, BranchDoc, Candidate, SearchRequest
from search.backends.embedded import terms_of
from search.settings import SearchSettings

_FIELDS = {"name": "name_t", "tags": "tags_t", "description": "desc_t", "reviews": "reviews_t"}


def index_template(prefix: str) -> dict[str, Any]:
    text_t = {"type": "text", "analyzer": "pretokenized", "similarity": "BM25"}
    return {
        "index_patterns": [f"{prefix}-branches-*"],
        "template": {
            "settings": {
                "number_of_shards": 1,
                "analysis": {"analyzer": {"pretokenized": {"type": "custom", "tokenizer": "whitespace"}}},
            },
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "branch_id": {"type": "keyword"},
                    **{field: text_t for field in _FIELDS.values()},
                    "name": {"type": "text", "analyzer": "standard"},
                    "description": {"type": "text", "analyzer": "standard"},
                    "facilities": {"type": "keyword"},
                    "tags": {"type": "keyword"},
                    "open_24h": {"type": "boolean"},
                    "location": {"type": "geo_point"},
                    "price": {"type": "integer"},
                    "rating": {"type": "float"},
                    "doc": {"type": "object", "enabled": False},
                },
            },
        },
    }


class ElasticsearchBackend:
    name = "elasticsearch"

    def __init__(self, settings: SearchSettings, *, client: AsyncElasticsearch | None = None) -> None:
        if not settings.elasticsearch_url:
            raise ValueError("the elasticsearch backend needs SMARTGYM_ELASTICSEARCH_URL")
        self.prefix = settings.elasticsearch_index_prefix
        self.alias = f"{self.prefix}-branches"
        self._retries = settings.elasticsearch_bulk_retries
        api_key = settings.elasticsearch_api_key.get_secret_value() if settings.elasticsearch_api_key else None
        self.client = client or AsyncElasticsearch(
            settings.elasticsearch_url,
            api_key=api_key,
            request_timeout=settings.elasticsearch_timeout_s,
            retry_on_timeout=True,
            max_retries=2,
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.client.indices.put_index_template(name=self.alias, **index_template(self.prefix))
        if not await self.client.indices.exists_alias(name=self.alias):
            await self.client.indices.create(
                index=self._new_index_name(), aliases={self.alias: {"is_write_index": True}}
            )

    async def close(self) -> None:
        await self.client.close()

    def _new_index_name(self) -> str:
        return f"{self.alias}-{time.time_ns()}"

    async def live_indices(self) -> list[str]:
        try:
            found = await self.client.indices.get_alias(name=self.alias)
        except NotFoundError:
            return []
        return sorted(found.body)

    # -- writes --------------------------------------------------------------------------

    @staticmethod
    def source(doc: BranchDoc) -> dict[str, Any]:
        terms = terms_of(doc)
        return {
            "branch_id": doc.branch_id,
            **{_FIELDS[key]: value for key, value in terms.items()},
            "name": doc.name,
            "description": doc.description,
            "facilities": doc.facilities,
            "tags": doc.tags,
            "open_24h": doc.open_24h,
            "location": {"lat": doc.lat, "lon": doc.lon},
            "price": doc.monthly_price_krw,
            "rating": doc.rating_avg,
            "doc": doc.to_json(),
        }

    async def _bulk(self, actions: list[dict[str, Any]], *, refresh: str | bool) -> None:
        if not actions:
            return
        _ok, errors = await async_bulk(
            self.client,
            actions,
            max_retries=self._retries,
            initial_backoff=0.5,
            max_backoff=10,
            refresh=refresh,
            raise_on_error=False,
        )
        failed = [item for item in errors if not _is_missing_delete(item)] if isinstance(errors, list) else []
        if failed:
            raise RuntimeError(f"{len(failed)} documents were refused by Elasticsearch: {failed[:3]}")

    async def upsert(self, docs: Sequence[BranchDoc]) -> None:
        actions = [
            {"_op_type": "index", "_index": self.alias, "_id": doc.branch_id, "_source": self.source(doc)}
            for doc in docs
        ]
        await self._bulk(actions, refresh="wait_for")

    async def delete(self, branch_ids: Sequence[str]) -> None:
        actions = [{"_op_type": "delete", "_index": self.alias, "_id": branch_id} for branch_id in branch_ids]
        await self._bulk(actions, refresh="wait_for")

    async def rebuild(self, docs: Sequence[BranchDoc]) -> int:
        old = await self.live_indices()
        fresh = self._new_index_name()
        await self.client.indices.create(index=fresh)
        try:
            actions = [
                {"_op_type": "index", "_index": fresh, "_id": doc.branch_id, "_source": self.source(doc)}
                for doc in docs
            ]
            await self._bulk(actions, refresh=False)
            await self.client.indices.refresh(index=fresh)
        except BaseException:
            await self.client.indices.delete(index=fresh, ignore_unavailable=True)
            raise
        # One atomic call: every search sees either the old index or the complete new one.
        await self.client.indices.update_aliases(
            actions=[
                *({"remove": {"index": index, "alias": self.alias}} for index in old),
                {"add": {"index": fresh, "alias": self.alias, "is_write_index": True}},
            ]
        )
        for index in old:
            await self.client.indices.delete(index=index, ignore_unavailable=True)
        return len(docs)

    # -- reads ---------------------------------------------------------------------------

    def query_body(self, request: SearchRequest) -> dict[str, Any]:
        should: list[dict[str, Any]] = []
        text = " ".join(request.terms)
        if text:
            for key, field in _FIELDS.items():
                should.append({"match": {field: {"query": text, "boost": BOOSTS[key]}}})
                if key != "reviews":
                    latin = " ".join(term for term in request.terms if term.isascii() and len(term) >= 4)
                    if latin:
                        should.append(
                            {"match": {field: {"query": latin, "fuzziness": "AUTO", "boost": BOOSTS[key] * 0.5}}}
                        )
        filters: list[dict[str, Any]] = [{"term": {"facilities": facility}} for facility in request.facilities]
        if request.open_24h:
            filters.append({"term": {"open_24h": True}})
        if request.price_max_krw is not None:
            filters.append({"range": {"price": {"gte": 0, "lte": request.price_max_krw}}})
        if request.rating_min is not None:
            filters.append({"range": {"rating": {"gte": request.rating_min}}})
        if request.geo is not None:
            filters.append(
                {
                    "geo_distance": {
                        "distance": f"{request.geo.radius_m:.0f}m",
                        "location": {"lat": request.geo.lat, "lon": request.geo.lon},
                    }
                }
            )
        query: dict[str, Any] = {"bool": {"filter": filters}}
        if should:
            query["bool"]["must"] = [{"bool": {"should": should, "minimum_should_match": 1}}]
        if request.tags:
            # Wanted attributes ("quiet") lift a branch; they never exclude one.
            query["bool"]["should"] = [{"terms": {"tags": request.tags, "boost": BOOSTS["tags"]}}]
        if request.exclude:
            query["bool"]["must_not"] = [{"ids": {"values": request.exclude}}]
        body: dict[str, Any] = {
            "query": query,
            "size": request.limit,
            "source_includes": ["doc"],
            "track_total_hits": False,
        }
        if request.words:
            words = " ".join(request.words)
            body["highlight"] = {
                "encoder": "html",
                "pre_tags": ["<em>"],
                "post_tags": ["</em>"],
                "fields": {"name": {}, "description": {"fragment_size": 80, "number_of_fragments": 2}},
                "highlight_query": {"multi_match": {"query": words, "fields": ["name", "description"]}},
            }
        if request.geo is not None:
            body["sort"] = [
                "_score",
                {
                    "_geo_distance": {
                        "location": {"lat": request.geo.lat, "lon": request.geo.lon},
                        "order": "asc",
                        "unit": "m",
                    }
                },
            ]
            body["track_scores"] = True
        return body

    async def search(self, request: SearchRequest) -> list[Candidate]:
        response = await self.client.search(index=self.alias, **self.query_body(request))
        candidates: list[Candidate] = []
        for hit in response["hits"]["hits"]:
            highlight = {key: list(value) for key, value in (hit.get("highlight") or {}).items()}
            candidates.append(
                Candidate(
                    doc=BranchDoc.from_json(hit["_source"]["doc"]),
                    text_score=float(hit.get("_score") or 0.0),
                    highlights=highlight,
                )
            )
        return candidates

    async def get(self, branch_ids: Sequence[str]) -> dict[str, BranchDoc]:
        if not branch_ids:
            return {}
        response = await self.client.search(
            index=self.alias, query={"ids": {"values": list(branch_ids)}}, size=len(branch_ids), source_includes=["doc"]
        )
        docs = [BranchDoc.from_json(hit["_source"]["doc"]) for hit in response["hits"]["hits"]]
        return {doc.branch_id: doc for doc in docs}

    async def count(self) -> int:
        response = await self.client.count(index=self.alias)
        return int(response["count"])

    async def all_docs(self) -> list[BranchDoc]:
        return [
            BranchDoc.from_json(hit["_source"]["doc"])
            async for hit in async_scan(
                self.client, index=self.alias, query={"query": {"match_all": {}}}, _source=["doc"]
            )
        ]


def _is_missing_delete(item: Any) -> bool:
    """Deleting a document that is not there is what we wanted anyway."""
    return isinstance(item, dict) and item.get("delete", {}).get("status") == 404
