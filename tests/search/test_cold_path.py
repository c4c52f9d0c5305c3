"""The cold path: reviews and profiles are enriched through the LLM partner (a local
stand-in speaking OpenAI's chat-completions format on a real port) with retries, a
circuit breaker and a daily budget, falling back to the offline extractor; the hot path
never calls the partner."""

from __future__ import annotations

from sqlalchemy import select

from search.llm_sim import LOCAL_KEY, llm_sim_state
from search.llm_sim import create_app as create_llm_app
from search.models import BranchKeywords, EnrichmentDue, LlmUsage
from tests.search.conftest import branch, review
from tests.support.apps import serving

QUIET = ("조용해서 집중이 잘 돼요", "very quiet in the evening", "한적하고 여유로워요")


async def keywords(search, branch_id: str) -> BranchKeywords | None:
    async with search.app.state.kernel.db.sessions() as session:
        return await session.get(BranchKeywords, branch_id)


async def seed(search) -> None:
    await search.announce(branch("b1", "Calm Gym", facilities=("shower",)))
    await search.announce(*[review("b1", 5, text) for text in QUIET])
    await search.settle()


def llm_settings(url: str, **extra):
    return {
        "search_llm_url": url,
        "search_llm_api_key": LOCAL_KEY,
        "search_llm_retry_base_s": 0.01,
        "breaker_fail_max": 3,
        "breaker_reset_timeout_s": 60,
        **extra,
    }


async def test_reviews_are_enriched_by_the_partner_and_become_searchable(open_search):
    state = llm_sim_state()
    async with serving(create_llm_app(state)) as url, open_search(**llm_settings(url)) as search:
        await seed(search)
        assert await search.enrich() == 1
        [request] = state.requests
        assert request["model"] == "gpt-4o-mini"
        assert request["response_format"] == {"type": "json_object"}
        assert "조용해서" in request["messages"][1]["content"]
        stored = await keywords(search, "b1")
        assert stored.source == "llm"
        assert stored.tags == ["quiet"]
        async with search.app.state.kernel.db.sessions() as session:
            usage = (await session.scalars(select(LlmUsage))).one()
            assert usage.calls == 1
            assert usage.tokens > 0
            assert (await session.scalars(select(EnrichmentDue))).all() == []
        calls = len(state.requests)
        result = await search.find("quiet gym")
        assert result["hits"][0]["why"]["tags"] == ["quiet"]
        await search.find("조용한 헬스장 샤워실")
        assert len(state.requests) == calls  # the hot path never asks the partner


async def test_outages_and_rate_limits_are_retried(open_search):
    state = llm_sim_state()
    state.failures.extend([(503, None), (429, 0.05)])
    async with serving(create_llm_app(state)) as url, open_search(**llm_settings(url)) as search:
        await seed(search)
        assert await search.enrich() == 1
        assert len(state.requests) == 3
        assert (await keywords(search, "b1")).source == "llm"


async def test_a_failing_partner_opens_the_circuit_and_the_offline_extractor_steps_in(open_search):
    state = llm_sim_state()
    state.failures.extend([(500, None)] * 20)
    async with serving(create_llm_app(state)) as url, open_search(**llm_settings(url)) as search:
        await seed(search)
        await search.announce(branch("b2", "Other Gym"))
        await search.settle()
        await search.enrich()
        # Three attempts for the first branch open the circuit; the second is refused
        # without a call.
        assert len(state.requests) == 3
        assert search.app.state.enricher.llm.breaker.state == "open"
        assert (await keywords(search, "b1")).source == "offline"
        assert (await keywords(search, "b1")).tags == ["quiet"]
        assert (await keywords(search, "b2")).source == "offline"
        async with search.app.state.kernel.db.sessions() as session:
            due = (await session.scalars(select(EnrichmentDue))).all()
        assert {row.branch_id for row in due} == {"b1", "b2"}  # the partner is asked again later


async def test_the_daily_budget_stops_calls(open_search):
    state = llm_sim_state()
    async with (
        serving(create_llm_app(state)) as url,
        open_search(**llm_settings(url, search_llm_daily_token_budget=0)) as search,
    ):
        await seed(search)
        await search.enrich()
        assert state.requests == []
        assert (await keywords(search, "b1")).source == "offline"


async def test_what_the_partner_answers_is_validated(open_search):
    state = llm_sim_state(
        raw_content='{"tags": ["quiet", "<script>", "helipad"], "keywords": ["calm", "x\\u0000y", 7]}'
    )
    async with serving(create_llm_app(state)) as url, open_search(**llm_settings(url)) as search:
        await seed(search)
        await search.enrich()
        stored = await keywords(search, "b1")
        assert (stored.source, stored.tags, stored.keywords) == ("llm", ["quiet"], ["calm"])
        state.raw_content = "Sure! Here are the tags: quiet"
        await search.announce(review("b1", 4, "also quiet"))
        await search.settle()
        await search.enrich()
        assert (await keywords(search, "b1")).source == "offline"


async def test_without_a_partner_the_offline_extractor_runs(search):
    await seed(search)
    await search.enrich()
    stored = await keywords(search, "b1")
    assert (stored.source, stored.tags) == ("offline", ["quiet"])
