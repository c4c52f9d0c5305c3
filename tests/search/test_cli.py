"""``smartgym search reindex`` rebuilds the embedded index from the database."""

from __future__ import annotations

import asyncio

import click
from click.testing import CliRunner

from search.cli import search as search_group
from tests.search.conftest import branch, review


async def test_reindex_rebuilds_from_the_database(open_search, tmp_path, monkeypatch):
    async with open_search() as search:
        await search.announce(branch("b1", "One Gym"), branch("b2", "Two Gym"), review("b1", 5, "good"))
        await search.settle()
    monkeypatch.setenv("SMARTGYM_ENVIRONMENT", "test")
    monkeypatch.setenv("SMARTGYM_DATA_DIR", str(tmp_path))
    main = click.Group(commands=[search_group])
    result = await asyncio.to_thread(CliRunner().invoke, main, ["search", "reindex"])
    assert result.exit_code == 0, result.output
    assert "reindexed 2 branches into tantivy" in result.output
    async with open_search() as search:
        assert {hit["branch_id"] for hit in (await search.find("gym"))["hits"]} == {"b1", "b2"}
