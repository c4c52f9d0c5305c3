"""The embedded engine: tantivy (Lucene-like BM25 in Rust) in this process, on local disk.

Terms come pre-analysed from :mod:`search.text` and tantivy splits them on whitespace,
so Korean gets the same cuts here as in the query. Geography is a bounding box on two
fast fields; the exact radius is checked above. One writer per index directory: this is
the engine of embedded mode and single-replica installations.

A rebuild writes a new generation directory and switches to it (``CURRENT`` names the
live one), so searches keep the old index until the new one is complete.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tantivy

from search.backends.base import BOOSTS, BranchDoc, Candidate, SearchRequest
from search.text import analyze

SCHEMA_VERSION = "2"
_FIELDS = {"name": "name_t", "tags": "tags_t", "description": "desc_t", "reviews": "reviews_t"}
_WRITER_HEAP = 64_000_000
_UNKNOWN_PRICE = -1


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("branch_id", stored=True, tokenizer_name="raw")
    for field in _FIELDS.values():
        builder.add_text_field(field, tokenizer_name="whitespace", index_option="freq")
    builder.add_text_field("facility", tokenizer_name="raw", index_option="basic")
    builder.add_boolean_field("open_24h", indexed=True, fast=True)
    builder.add_float_field("lat", indexed=True, fast=True)
    builder.add_float_field("lon", indexed=True, fast=True)
    builder.add_integer_field("price", indexed=True, fast=True)
    builder.add_float_field("rating", indexed=True, fast=True)
    # A number per branch, read from a column on the hot path: fetching stored documents
    # for hundreds of candidates would cost more than the search itself.
    builder.add_unsigned_field("ordinal", stored=True, fast=True)
    builder.add_bytes_field("doc", stored=True, indexed=False)
    return builder.build()


def terms_of(doc: BranchDoc) -> dict[str, str]:
    """The analysed text of each searchable field (also what the Elasticsearch backend
    sends as pre-analysed tokens)."""
    tag_words = [*doc.tags, *doc.keywords]
    return {
        "name": " ".join(analyze(f"{doc.name} {doc.address}")),
        "tags": " ".join(analyze(" ".join(tag_words).replace("_", " "))),
        "description": " ".join(analyze(doc.description)),
        "reviews": " ".join(analyze(" ".join(doc.review_sample), morphology=False)),
    }


class TantivyBackend:
    name = "tantivy"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.schema = _schema()
        self._index: tantivy.Index | None = None
        self._writer: Any = None
        self._generation = 0
        # tantivy's writer is not to be shared across threads at once.
        self._write_lock = threading.Lock()
        # The indexed documents in memory, by branch and by ordinal.
        self._docs: dict[str, BranchDoc] = {}
        self._ordinal_of: dict[str, int] = {}
        self._branch_at: dict[int, str] = {}
        self._next_ordinal = 1

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        current = self.directory / "CURRENT"
        generation = 1
        if current.exists():
            name, _, version = current.read_text().strip().partition(":")
            if version == SCHEMA_VERSION and name.isdigit() and (self.directory / f"gen-{name}").exists():
                generation = int(name)
            else:
                generation = int(name) + 1 if name.isdigit() else 1
        self._switch(generation)
        self._load_documents()

    def _load_documents(self) -> None:
        index, _ = self._require()
        searcher = index.searcher()
        total = int(searcher.num_docs)
        self._docs, self._ordinal_of, self._branch_at, self._next_ordinal = {}, {}, {}, 1
        if total == 0:
            return
        for _score, address in searcher.search(tantivy.Query.all_query(), limit=total, count=False).hits:
            stored = searcher.doc(address)
            doc = BranchDoc.from_json(json.loads(bytes(stored["doc"][0])))
            self._remember(doc, int(stored["ordinal"][0]))

    def _remember(self, doc: BranchDoc, ordinal: int) -> None:
        self._next_ordinal = max(self._next_ordinal, ordinal + 1)
        self._docs[doc.branch_id] = doc
        self._ordinal_of[doc.branch_id] = ordinal
        self._branch_at[ordinal] = doc.branch_id

    def _forget(self, branch_id: str) -> None:
        self._docs.pop(branch_id, None)
        ordinal = self._ordinal_of.pop(branch_id, None)
        if ordinal is not None:
            self._branch_at.pop(ordinal, None)

    def _ordinal(self, branch_id: str) -> int:
        known = self._ordinal_of.get(branch_id)
        if known is not None:
            return known
        self._next_ordinal += 1
        return self._next_ordinal - 1

    def _switch(self, generation: int) -> None:
        path = self.directory / f"gen-{generation}"
        path.mkdir(parents=True, exist_ok=True)
        index = tantivy.Index(self.schema, path=str(path))
        writer = index.writer(_WRITER_HEAP, 1)
        old_writer = self._writer
        self._index, self._writer, self._generation = index, writer, generation
        staging = self.directory / "CURRENT.tmp"
        staging.write_text(f"{generation}:{SCHEMA_VERSION}")
        staging.replace(self.directory / "CURRENT")
        if old_writer is not None:
            old_writer.wait_merging_threads()
        # Searches still holding the old generation keep reading its open files.
        for stale in self.directory.glob("gen-*"):
            if stale.name != f"gen-{generation}":
                shutil.rmtree(stale, ignore_errors=True)

    async def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await asyncio.to_thread(writer.wait_merging_threads)

    # -- writes --------------------------------------------------------------------------

    def _document(self, doc: BranchDoc, ordinal: int) -> tantivy.Document:
        document = tantivy.Document()
        document.add_text("branch_id", doc.branch_id)
        document.add_unsigned("ordinal", ordinal)
        for key, text in terms_of(doc).items():
            document.add_text(_FIELDS[key], text)
        for facility in doc.facilities:
            document.add_text("facility", facility)
        document.add_boolean("open_24h", doc.open_24h)
        document.add_float("lat", doc.lat)
        document.add_float("lon", doc.lon)
        document.add_integer("price", doc.monthly_price_krw if doc.monthly_price_krw is not None else _UNKNOWN_PRICE)
        document.add_float("rating", doc.rating_avg)
        document.add_bytes("doc", json.dumps(doc.to_json(), ensure_ascii=False).encode())
        return document

    def _write(self, docs: Sequence[BranchDoc], deletions: Sequence[str]) -> None:
        with self._write_lock:
            index, writer = self._require()
            for branch_id in (*deletions, *(doc.branch_id for doc in docs)):
                writer.delete_documents_by_term("branch_id", branch_id)
            placed = []
            for doc in docs:
                ordinal = self._ordinal(doc.branch_id)
                placed.append((doc, ordinal))
                writer.add_document(self._document(doc, ordinal))
            writer.commit()
            index.reload()
            for branch_id in deletions:
                self._forget(branch_id)
            for doc, ordinal in placed:
                self._remember(doc, ordinal)

    def _require(self) -> tuple[tantivy.Index, Any]:
        if self._index is None or self._writer is None:
            raise RuntimeError("the search index is not open")
        return self._index, self._writer

    async def upsert(self, docs: Sequence[BranchDoc]) -> None:
        if docs:
            await asyncio.to_thread(self._write, docs, ())

    async def delete(self, branch_ids: Sequence[str]) -> None:
        if branch_ids:
            await asyncio.to_thread(self._write, (), branch_ids)

    async def rebuild(self, docs: Sequence[BranchDoc]) -> int:
        return await asyncio.to_thread(self._rebuild, docs)

    def _rebuild(self, docs: Sequence[BranchDoc]) -> int:
        with self._write_lock:
            generation = self._generation + 1
            path = self.directory / f"gen-{generation}"
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
            index = tantivy.Index(self.schema, path=str(path))
            writer = index.writer(_WRITER_HEAP, 1)
            for ordinal, doc in enumerate(docs, start=1):
                writer.add_document(self._document(doc, ordinal))
            writer.commit()
            writer.wait_merging_threads()
            del writer
            self._switch(generation)
            index_now, _ = self._require()
            index_now.reload()
            self._docs, self._ordinal_of, self._branch_at, self._next_ordinal = {}, {}, {}, 1
            for ordinal, doc in enumerate(docs, start=1):
                self._remember(doc, ordinal)
        return len(docs)

    # -- reads ---------------------------------------------------------------------------

    def _query(self, request: SearchRequest) -> tantivy.Query:
        schema = self.schema
        should: list[tuple[tantivy.Occur, tantivy.Query]] = []
        for term in request.terms:
            for key, field in _FIELDS.items():
                exact = tantivy.Query.term_query(schema, field, term)
                should.append((tantivy.Occur.Should, tantivy.Query.boost_query(exact, BOOSTS[key])))
                if term.isascii() and len(term) >= 4 and key in ("name", "tags", "description"):
                    distance = 1 if len(term) < 8 else 2
                    fuzzy = tantivy.Query.fuzzy_term_query(schema, field, term, distance, True, False)
                    should.append((tantivy.Occur.Should, tantivy.Query.boost_query(fuzzy, BOOSTS[key] * 0.5)))
        must: list[tuple[tantivy.Occur, tantivy.Query]] = [
            (tantivy.Occur.Must, tantivy.Query.boolean_query(should) if should else tantivy.Query.all_query())
        ]
        # Wanted attributes ("quiet") lift a branch; they never exclude one.
        for tag in request.tags:
            exact = tantivy.Query.term_query(schema, "tags_t", tag)
            must.append((tantivy.Occur.Should, tantivy.Query.boost_query(exact, BOOSTS["tags"])))
        filters = self._filters(request)
        for query in filters:
            must.append((tantivy.Occur.Must, tantivy.Query.const_score_query(query, 0.0)))
        for branch_id in request.exclude:
            must.append((tantivy.Occur.MustNot, tantivy.Query.term_query(schema, "branch_id", branch_id)))
        return tantivy.Query.boolean_query(must)

    def _filters(self, request: SearchRequest) -> list[tantivy.Query]:
        schema = self.schema
        filters = [tantivy.Query.term_query(schema, "facility", facility) for facility in request.facilities]
        if request.open_24h:
            filters.append(tantivy.Query.term_query(schema, "open_24h", True))
        if request.price_max_krw is not None:
            filters.append(
                tantivy.Query.range_query(schema, "price", tantivy.FieldType.Integer, 0, request.price_max_krw)
            )
        if request.rating_min is not None:
            filters.append(
                tantivy.Query.range_query(schema, "rating", tantivy.FieldType.Float, request.rating_min, 5.0)
            )
        if request.geo is not None:
            dlat = request.geo.radius_m / 111_320.0
            dlon = request.geo.radius_m / (111_320.0 * max(0.01, math.cos(math.radians(request.geo.lat))))
            filters.append(
                tantivy.Query.range_query(
                    schema, "lat", tantivy.FieldType.Float, request.geo.lat - dlat, request.geo.lat + dlat
                )
            )
            filters.append(
                tantivy.Query.range_query(
                    schema, "lon", tantivy.FieldType.Float, request.geo.lon - dlon, request.geo.lon + dlon
                )
            )
        return filters

    async def search(self, request: SearchRequest) -> list[Candidate]:
        # Under a millisecond at 10k branches: cheaper inline than a thread hop.
        index, _ = self._require()
        searcher = index.searcher()
        hits = searcher.search(self._query(request), limit=request.limit, count=False).hits
        ordinals = searcher.fast_field_values("ordinal", [address for _score, address in hits])
        candidates: list[Candidate] = []
        for (score, _address), ordinal in zip(hits, ordinals, strict=True):
            branch_id = self._branch_at.get(int(ordinal)) if ordinal is not None else None
            doc = self._docs.get(branch_id) if branch_id is not None else None
            if doc is not None:
                candidates.append(Candidate(doc=doc, text_score=float(score)))
        return candidates

    async def get(self, branch_ids: Sequence[str]) -> dict[str, BranchDoc]:
        return {branch_id: self._docs[branch_id] for branch_id in branch_ids if branch_id in self._docs}

    async def count(self) -> int:
        index, _ = self._require()
        return int(index.searcher().num_docs)

    async def all_docs(self) -> list[BranchDoc]:
        return list(self._docs.values())
