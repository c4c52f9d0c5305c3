"""Search engines behind one interface; settings choose which (see :func:`open_backend`)."""

from __future__ import annotations

from search.backends.base import BranchDoc, Candidate, GeoFilter, SearchBackend, SearchRequest
from search.settings import SearchSettings


def open_backend(settings: SearchSettings) -> SearchBackend:
    if settings.search_backend == "elasticsearch":
        from search.backends.elastic import ElasticsearchBackend

        return ElasticsearchBackend(settings)
    from search.backends.embedded import TantivyBackend

    return TantivyBackend(settings.index_dir)


__all__ = ["BranchDoc", "Candidate", "GeoFilter", "SearchBackend", "SearchRequest", "open_backend"]
