"""Search hot path through the service API at 10,000 branches and 1,000,000 reviews
(embedded engine), plus index throughput and the relevance set's scores.

The search service runs as its own process (``smartgym serve search``) on a SQLite
database seeded here in bulk (the event path would take far longer than the benchmark's
budget for a million reviews); the index is then rebuilt through the operator API, which
is also what is timed for index throughput. Queries are the relevance set's 66 (Korean
and English, typos, places, facilities, hours), sent one at a time over keep-alive HTTP.

    .venv/bin/python bench/search_query_latency.py                       # ~2 min: 10k branches, 100k reviews
    .venv/bin/python bench/search_query_latency.py --reviews-per-branch 100 --queries 2000   # the full 1M (~4-5 min)

Seeding a million reviews alone takes about two minutes on a loaded 2-core machine,
so the default size keeps the run inside the benchmark budget; the full size is a flag.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from sqlalchemy import create_engine, insert
from yarl import URL

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the repo root

from bench._common import cell, emit, fail, machine, progress, summary, table
from common.db import sync_url
from common.migrations import upgrade
from common.security import Role
from search.corpus import GENERAL_EN, GENERAL_KO, generate, iter_reviews
from search.keywords import extract_offline
from search.models import Branch, BranchKeywords, Review, ReviewStats
from search.relevance import evaluate_embedded, load
from tests.support import tokens
from tests.support.apps import free_port, serving
from tests.support.processes import clean_env, start, stop, wait_healthy

CHUNK = 50_000


FILLER = [*GENERAL_KO, *GENERAL_EN]
INSERT_REVIEW = "INSERT INTO reviews (review_id, branch_id, member_id, rating, text, posted_at) VALUES (?,?,?,?,?,?)"
RECOUNT = (
    "UPDATE review_stats SET"
    " review_count = (SELECT count(*) FROM reviews r WHERE r.branch_id = review_stats.branch_id),"
    " rating_sum = (SELECT sum(rating) FROM reviews r WHERE r.branch_id = review_stats.branch_id)"
)


def filler_reviews(database: Path, branch_ids: list[str], per_branch: int) -> int:
    """Older reviews beyond the corpus's latest few, written with sqlite3 directly (in
    SQLAlchemy's SQLite formats): a million rows through the ORM would take minutes."""
    rng = random.Random(5)
    connection = sqlite3.connect(database)
    written = 0
    try:
        rows: list[tuple[str, str, str, int, str, str]] = []
        for branch_id in branch_ids:
            for number in range(per_branch):
                posted = f"2025-{1 + number % 12:02d}-{1 + number % 28:02d} {number % 24:02d}:00:00.000000"
                rows.append(
                    (
                        uuid.UUID(int=rng.getrandbits(128)).hex,
                        branch_id,
                        uuid.UUID(int=rng.getrandbits(128)).hex,
                        rng.randint(1, 5),
                        rng.choice(FILLER),
                        posted,
                    )
                )
            if len(rows) >= CHUNK:
                connection.executemany(INSERT_REVIEW, rows)
                written += len(rows)
                rows = []
                if written % 200_000 < CHUNK:
                    progress(f"stored {written} older reviews")
        if rows:
            connection.executemany(
                "INSERT INTO reviews (review_id, branch_id, member_id, rating, text, posted_at) VALUES (?,?,?,?,?,?)",
                rows,
            )
            written += len(rows)
        connection.commit()
    finally:
        connection.close()
    return written


def seed(database_url: str, branches: int, reviews_per_branch: int) -> tuple[int, int, float]:
    started = time.perf_counter()
    # The corpus gives each branch its latest reviews (what the index reads); older ones
    # are filler up to the wanted total.
    latest = min(reviews_per_branch, 8)
    corpus = generate(branches=branches, reviews_per_branch=(latest, latest), seed=11)
    progress(f"generated {branches} branches in {time.perf_counter() - started:.1f}s")
    upgrade("search", database_url)
    engine = create_engine(sync_url(database_url))
    now = corpus[0].reviews[0].posted_at if corpus[0].reviews else None
    reviews = 0
    with engine.begin() as connection:
        connection.execute(
            insert(Branch),
            [
                {
                    "branch_id": item.branch_id,
                    "version": 1,
                    "name": item.name,
                    "address": item.address,
                    "description": item.description,
                    "lat": item.lat,
                    "lon": item.lon,
                    "open_24h": item.open_24h,
                    "weekly_hours": [list(day) for day in item.weekly_hours],
                    "facilities": item.facilities,
                    "monthly_price_krw": item.monthly_price_krw,
                    "day_pass_krw": None,
                    "photos_count": item.photos_count,
                    "closed": False,
                    "updated_at": now,
                }
                for item in corpus
            ],
        )
        connection.execute(
            insert(ReviewStats),
            [
                {
                    "branch_id": item.branch_id,
                    "rating_sum": sum(r.rating for r in item.reviews),
                    "review_count": len(item.reviews),
                }
                for item in corpus
            ],
        )
        keywords = []
        for item in corpus:
            recent = [r.text for r in sorted(item.reviews, key=lambda r: r.posted_at, reverse=True)[:30]]
            extraction = extract_offline(description=item.description, reviews=recent)
            keywords.append(
                {
                    "branch_id": item.branch_id,
                    "tags": extraction.tags,
                    "keywords": extraction.keywords,
                    "source": "offline",
                    "reviews_seen": len(recent),
                    "extracted_at": now,
                }
            )
        connection.execute(insert(BranchKeywords), keywords)
        rows: list[dict[str, object]] = []
        for branch_id, review in iter_reviews(corpus):
            rows.append(
                {
                    "review_id": review.review_id,
                    "branch_id": branch_id,
                    "member_id": review.member_id,
                    "rating": review.rating,
                    "text": review.text,
                    "posted_at": review.posted_at,
                }
            )
            if len(rows) == CHUNK:
                connection.execute(insert(Review), rows)
                reviews += len(rows)
                rows = []
                if reviews % 200_000 == 0:
                    progress(f"stored {reviews} reviews")
        if rows:
            connection.execute(insert(Review), rows)
            reviews += len(rows)
    engine.dispose()
    older = reviews_per_branch - latest
    if older > 0:
        path = Path(database_url.removeprefix("sqlite+aiosqlite:///"))
        reviews += filler_reviews(path, [item.branch_id for item in corpus], older)
        with sqlite3.connect(path) as connection:
            connection.execute(RECOUNT)
    return len(corpus), reviews, time.perf_counter() - started


async def timed_requests(
    session: aiohttp.ClientSession, urls: list[str], headers: dict[str, str]
) -> tuple[list[float], int]:
    latencies: list[float] = []
    failures = 0
    for url in urls:
        started = time.perf_counter()
        async with session.get(url, headers=headers) as response:
            await response.read()
            if response.status != 200:
                failures += 1
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, failures


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as directory:
        data = Path(directory)
        database_url = f"sqlite+aiosqlite:///{data / 'search.db'}"
        branches, reviews, seed_s = await asyncio.to_thread(seed, database_url, args.branches, args.reviews_per_branch)
        progress(f"seeded {branches} branches and {reviews} reviews in {seed_s:.1f}s")
        jwks_port, port = free_port(), free_port()
        async with serving(tokens.jwks_app(), jwks_port) as jwks_url:
            env = clean_env(
                SMARTGYM_ENVIRONMENT="test",
                SMARTGYM_DATA_DIR=str(data),
                SMARTGYM_AUTH_URL=jwks_url,
                SMARTGYM_LOG_LEVEL="WARNING",
                SMARTGYM_SEARCH_ENRICH_INTERVAL_S="3600",
            )
            log = data / "search.log"
            process = start(
                ["serve", "search", "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=Path.cwd(), log=log
            )
            try:
                base = f"http://127.0.0.1:{port}"
                await asyncio.to_thread(wait_healthy, base, process, log, 120)
                operator = {"authorization": f"Bearer {tokens.issuer().issue('bench-operator', [Role.OPERATOR])}"}
                member = {"authorization": f"Bearer {tokens.issuer().issue('bench-member', [Role.CUSTOMER])}"}
                timeout = aiohttp.ClientTimeout(total=600)
                async with aiohttp.ClientSession(timeout=timeout) as session:
                    started = time.perf_counter()
                    async with session.post(f"{base}/admin/reindex", headers=operator) as response:
                        body = await response.json()
                        assert response.status == 200, body
                    index_s = time.perf_counter() - started
                    progress(f"indexed {body['documents']} documents in {index_s:.1f}s")
                    items = load()
                    urls = []
                    for number in range(args.queries + 100):
                        item = items[number % len(items)]
                        params = {"q": item["q"]}
                        if "lat" in item:
                            params.update(lat=str(item["lat"]), lon=str(item["lon"]))
                        urls.append(str(URL(f"{base}/search").with_query(params)))
                    await timed_requests(session, urls[:100], member)  # warm-up
                    latencies, failures = await timed_requests(session, urls[100:], member)
                    health, _ = await timed_requests(session, [f"{base}/healthz"] * args.queries, {})
            finally:
                stop(process)
        progress("scoring the relevance set")
        scores = await evaluate_embedded()
    hot, baseline = summary(latencies), summary(health)
    table(
        f"search hot path through the API ({machine()}), {branches} branches, {reviews} reviews",
        ["what", "n", "p50 ms", "p95 ms", "p99 ms", "failures"],
        [
            ["GET /search", len(latencies), cell(hot, "p50", 2), cell(hot, "p95", 2), cell(hot, "p99", 2), failures],
            [
                "GET /healthz (baseline)",
                len(health),
                cell(baseline, "p50", 2),
                cell(baseline, "p95", 2),
                cell(baseline, "p99", 2),
                0,
            ],
        ],
    )
    table(
        "index and relevance",
        ["figure", "value"],
        [
            ["seed (bulk SQL, not timed as indexing) s", f"{seed_s:.1f}"],
            ["rebuild through the operator API s", f"{index_s:.1f}"],
            ["index docs/s", f"{branches / index_s:.0f}"],
            [f"nDCG@10 ({scores.queries} queries, 400-branch corpus)", f"{scores.ndcg_at_10:.4f}"],
            ["recall@10", f"{scores.recall_at_10:.4f}"],
            ["nDCG@10 Korean / English", f"{scores.ndcg_ko:.4f} / {scores.ndcg_en:.4f}"],
        ],
    )
    if failures:
        fail(f"{failures} requests failed")
    emit(
        {
            "branches": branches,
            "reviews": reviews,
            "n": len(latencies),
            "failed_requests": failures,
            "p50_ms": round(hot["p50"], 2),
            "p95_ms": round(hot["p95"], 2),
            "p99_ms": round(hot["p99"], 2),
            "healthz_p50_ms": round(baseline["p50"], 2),
            "p50_over_healthz": round(hot["p50"] / baseline["p50"], 2),
            "index_docs_per_s": round(branches / index_s, 1),
            "ndcg_at_10": round(scores.ndcg_at_10, 4),
            "recall_at_10": round(scores.recall_at_10, 4),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--branches", type=int, default=10_000)
    parser.add_argument("--reviews-per-branch", type=int, default=10, help="100 gives the full million")
    parser.add_argument("--queries", type=int, default=1_000)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
