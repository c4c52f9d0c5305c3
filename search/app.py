"""search's app factory: the engine chosen by settings, the index updater and the
cold-path enricher as background jobs, the event intake and the member API."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from common.api import create_service_app
from common.breaker import breaker_for
from common.events.bus import EventBus
from common.kernel import build_kernel
from common.observability import Metrics
from common.periodic import Jobs, Periodic
from common.security import JwksCache
from common.settings import PlatformSettings
from contracts import CATALOG
from search.api import router
from search.backends import SearchBackend, open_backend
from search.catalogue import Catalogue
from search.enrichment import Enricher, EnrichmentMetrics
from search.events import Intake, subscriptions
from search.indexing import IndexMetrics, IndexUpdater
from search.lexicon import lexicon
from search.llm import LlmClient
from search.models import Base
from search.queries import SearchContext
from search.settings import SearchSettings
from search.text import warm_up

SERVICE = "search"


def create_app(
    settings: PlatformSettings,
    *,
    bus: EventBus | None = None,
    metrics: Metrics | None = None,
    keys: JwksCache | None = None,
    backend: SearchBackend | None = None,
    llm_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    config = SearchSettings.of(settings)
    kernel = build_kernel(SERVICE, config, metadata=Base.metadata, catalog=CATALOG, bus=bus, metrics=metrics, keys=keys)
    engine = backend or open_backend(config)
    catalogue = Catalogue()
    updater = IndexUpdater(
        database=kernel.db,
        backend=engine,
        catalogue=catalogue,
        review_sample=config.search_review_sample,
        flush_s=config.search_index_flush_s,
        metrics=IndexMetrics(kernel.metrics),
    )
    kernel.subscriptions = subscriptions(Intake(updater))
    llm = (
        LlmClient(
            config,
            database=kernel.db,
            breaker=breaker_for("search-llm", config, kernel.metrics),
            transport=llm_transport,
        )
        if config.search_llm_url
        else None
    )
    enricher = Enricher(
        database=kernel.db,
        updater=updater,
        metrics=EnrichmentMetrics(kernel.metrics),
        llm=llm,
        batch=config.search_enrich_batch,
        reviews_per_branch=config.search_enrich_reviews,
    )

    async def enrich() -> None:
        await enricher.run_once()

    jobs = [Periodic("search-enrichment", config.search_enrich_interval_s, enrich)]
    if engine.name == "elasticsearch":
        jobs.append(Periodic("search-catalogue", config.search_catalogue_refresh_s, updater.refresh_catalogue))
    background = Jobs(*jobs)

    def load_models() -> None:
        warm_up()
        lexicon()

    async def start() -> None:
        # Kiwi's model and the lexicon take seconds to load: in a thread, so the service
        # (and `smartgym up` after it) starts at once; requests wait for them (see api.py).
        warming = asyncio.ensure_future(asyncio.to_thread(load_models))
        await engine.start()
        await updater.start(warming=warming)
        await background.start()

    async def stop() -> None:
        await background.stop()
        await updater.stop()
        if llm is not None:
            await llm.aclose()
        await engine.close()

    app = create_service_app(kernel, title="SmartGym search", routers=[router], on_start=[start], on_stop=[stop])
    app.state.search = SearchContext(backend=engine, catalogue=catalogue, settings=config, ready=updater.ready)
    app.state.index_updater = updater
    app.state.enricher = enricher
    return app


def create_stand_in(name: str) -> FastAPI:
    """The partner stand-ins this service declares in its manifest."""
    if name != "llm_sim":
        raise KeyError(name)
    from search import llm_sim

    return llm_sim.create_app()
