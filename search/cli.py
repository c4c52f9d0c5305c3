"""``smartgym search …``: operator commands of the search service.

``reindex`` rebuilds the index from search's own tables. On Elasticsearch it runs beside
the live service (a new index, then the alias moves: zero downtime). The embedded index
has one writer: while a search process runs, use its operator API instead
(``POST /api/search/admin/reindex``).
"""

from __future__ import annotations

import asyncio
import time

import click

from common.db import Database
from common.observability import configure_logging
from search.backends import open_backend
from search.documents import all_docs
from search.settings import SearchSettings


async def _reindex(settings: SearchSettings) -> tuple[int, str, float]:
    database = Database(settings.database_url("search"))
    backend = open_backend(settings)
    started = time.perf_counter()
    try:
        try:
            await backend.start()
        except ValueError as exc:  # tantivy: the lock file is held by a running service
            raise click.ClickException(
                f"cannot open the embedded index ({exc}); while search runs, use POST /api/search/admin/reindex"
            ) from exc
        docs = [doc async for batch in all_docs(database, review_sample=settings.search_review_sample) for doc in batch]
        count = await backend.rebuild(docs)
    finally:
        await backend.close()
        await database.dispose()
    return count, backend.name, time.perf_counter() - started


@click.group("search")
def search() -> None:
    """Natural-language branch search: index maintenance."""


@search.command()
def reindex() -> None:
    """Rebuild the search index from the search database (settings from SMARTGYM_*)."""
    settings = SearchSettings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    count, backend, seconds = asyncio.run(_reindex(settings))
    click.echo(f"reindexed {count} branches into {backend} in {seconds:.1f}s")
