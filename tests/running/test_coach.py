"""The coach: rules without a partner; a partner (a local OpenAI-compatible stand-in)
behind a breaker and a budget, falling back to rules when it fails."""

from __future__ import annotations

from common.chat_sim import create_app as create_chat
from running.llm_sim import coach_sim_state
from tests.running.conftest import member
from tests.support.apps import serving


async def test_without_a_partner_the_coach_answers_from_rules(running):
    runner = member()
    answer = await running.client.post("/v1/coach", json={"question": "Am I overdoing it?"}, headers=runner.headers)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["source"], body["reason"]) == ("rules", "no coaching partner configured")
    assert "not enough history" in body["answer"]
    empty = await running.client.post("/v1/coach", json={"question": ""}, headers=runner.headers)
    assert empty.status_code == 422


async def test_a_partner_behind_a_breaker_and_a_budget(open_running):
    state = coach_sim_state()
    async with serving(create_chat(state)) as url:
        config = {
            "running_coach_url": url,
            "running_coach_api_key": state.api_key,
            "running_coach_questions_per_member": 3,
            "breaker_fail_max": 2,
            "breaker_reset_timeout_s": 60,
        }
        async with open_running(**config) as running:
            runner, other = member(), member()

            async def ask(who, question="How far this week?"):
                response = await running.client.post("/v1/coach", json={"question": question}, headers=who.headers)
                assert response.status_code == 200
                return response.json()

            first = await ask(runner)
            assert first["source"] == "partner"
            assert "How far this week?" in first["answer"]
            [request] = state.requests
            assert "weekly_volume" in request["messages"][1]["content"]  # the runner's own numbers went along
            await ask(runner)
            await ask(runner)
            limited = await ask(runner)  # the fourth question today
            assert (limited["source"], limited["reason"]) == ("rules", "daily question limit reached")
            assert len(state.requests) == 3

            state.failures.extend([(500, None), (503, None)])
            for _ in range(2):
                failed = await ask(other)
                assert failed["source"] == "rules"
                assert failed["reason"].startswith("the coaching partner failed")
            calls = len(state.requests)
            opened = await ask(other)  # the breaker is open: no call at all
            assert opened["reason"] == "the coaching partner is unavailable (circuit open)"
            assert len(state.requests) == calls


async def test_the_budget_is_the_installations_not_each_replicas(tmp_path, postgres):
    """Two replicas on one database: a member's questions and everyone's tokens are counted
    once for both, so a second replica is no second allowance."""
    from common.migrations import upgrade
    from running.app import create_app
    from tests.running.conftest import running_settings
    from tests.support import tokens
    from tests.support.apps import asgi_client

    state = coach_sim_state()  # 120 tokens an answer
    database = postgres.create("running")
    upgrade("running", database)
    async with serving(create_chat(state)) as url:
        shared = {
            "database_urls": {"running": database},
            "running_coach_url": url,
            "running_coach_api_key": state.api_key,
            "running_coach_questions_per_member": 3,
            "running_coach_tokens_per_day": 400,
        }
        replica_a = create_app(running_settings(tmp_path, running_replica="a", **shared), keys=tokens.key_cache())
        replica_b = create_app(running_settings(tmp_path, running_replica="b", **shared), keys=tokens.key_cache())
        async with asgi_client(replica_a) as a, asgi_client(replica_b) as b:
            runner, second, third = member(), member(), member()

            async def ask(client, who) -> dict:
                response = await client.post("/v1/coach", json={"question": "10k under 50?"}, headers=who.headers)
                assert response.status_code == 200
                return response.json()

            assert [(await ask(client, runner))["source"] for client in (a, b, a)] == ["partner"] * 3
            limited = await ask(b, runner)  # the fourth question, on the other replica
            assert (limited["source"], limited["reason"]) == ("rules", "daily question limit reached")
            # 360 of 400 tokens are spent: one more answer may overshoot, then nobody is served.
            assert (await ask(b, second))["source"] == "partner"
            spent = await ask(a, third)
            assert (spent["source"], spent["reason"]) == ("rules", "the coach's daily budget is spent")
            assert len(state.requests) == 4
