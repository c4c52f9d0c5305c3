"""The thin slice end to end: events in through the bus, the embedded engine, the member
API out — with reasons, paging, typos, and clear refusals of bad queries."""

from __future__ import annotations

import uuid

from common.security import Role
from tests.search.conftest import MEMBER, branch, headers, review

GANGNAM = (37.4979, 127.0276)
HONGDAE = (37.5572, 126.9245)


async def seed(search) -> None:
    await search.announce(
        branch(
            "gn-24",
            "스마트짐 강남역점",
            description="24시간 운영, 샤워실과 개인 락커 완비",
            lat=GANGNAM[0] + 0.002,
            lon=GANGNAM[1],
            open_24h=True,
            facilities=("shower", "locker"),
            monthly_price_krw=59_000,
        ),
        branch(
            "gn-day",
            "강남 파워짐",
            description="스쿼트랙 4대, 샤워실",
            lat=GANGNAM[0] - 0.003,
            lon=GANGNAM[1] + 0.002,
            weekly_hours=[(day, "06:00", "23:00") for day in range(7)],
            facilities=("shower", "squat_rack"),
            monthly_price_krw=45_000,
        ),
        branch(
            "hd-quiet",
            "Iron Garden Hongdae",
            address="서울 마포구 양화로 1",
            description="Calm gym with squat racks and free weights",
            lat=HONGDAE[0] + 0.001,
            lon=HONGDAE[1],
            facilities=("squat_rack", "free_weights", "shower"),
            monthly_price_krw=70_000,
        ),
        branch(
            "hd-loud",
            "Hongdae Fitness Club",
            address="서울 마포구 와우산로 2",
            description="Big gym with squat racks",
            lat=HONGDAE[0] - 0.002,
            lon=HONGDAE[1] + 0.001,
            facilities=("squat_rack",),
            monthly_price_krw=50_000,
        ),
    )
    await search.announce(
        *[
            review("hd-quiet", 5, text)
            for text in ("Very quiet in the evening", "quiet and clean", "calm, never crowded")
        ],
        *[review("hd-loud", 3, text) for text in ("always crowded and noisy", "loud music", "busy after work")],
        review("gn-24", 5, "새벽에도 조용하고 깨끗해요"),
    )
    await search.settle()
    await search.enrich()


async def test_korean_query_with_place_hours_and_facility(search):
    await seed(search)
    result = await search.find("강남역 근처 24시간 샤워실 있는 헬스장")
    assert [hit["branch_id"] for hit in result["hits"]] == ["gn-24"]
    interpretation = result["interpretation"]
    assert interpretation["place_id"] == "gangnam_stn"
    assert interpretation["open_24h"] is True
    assert interpretation["facilities"] == ["shower"]
    why = result["hits"][0]["why"]
    assert why["facilities"] == ["shower"]
    assert why["open_24h"] is True
    assert why["distance_m"] < 400


async def test_english_query_with_typos_prefers_the_quiet_branch(search):
    await seed(search)
    result = await search.find("quiet gym near Hongde with sqaut racks")
    assert result["interpretation"]["corrections"] == {"hongde": "홍대입구역", "sqaut racks": "스쿼트랙"}
    ids = [hit["branch_id"] for hit in result["hits"]]
    assert ids[:2] == ["hd-quiet", "hd-loud"]
    top = result["hits"][0]
    assert top["why"]["tags"] == ["quiet"]
    assert any("<em>" in snippet for snippets in top["why"]["highlights"].values() for snippet in snippets)


async def test_a_misspelt_branch_name_is_corrected_against_the_index(search):
    await seed(search)
    result = await search.find("iron gardn")
    assert result["hits"][0]["branch_id"] == "hd-quiet"
    assert result["interpretation"]["corrections"] == {"gardn": "garden"}


async def test_near_me_uses_the_callers_coordinates(search):
    await seed(search)
    result = await search.find("gym near me", lat=HONGDAE[0], lon=HONGDAE[1])
    assert {hit["branch_id"] for hit in result["hits"]} == {"hd-quiet", "hd-loud"}
    without = await search.find("gym near me")
    assert without["notes"]
    assert len(without["hits"]) == 4


async def test_price_and_rating_filters(search):
    await seed(search)
    cheap = await search.find("5만원 이하 헬스장")
    assert {hit["branch_id"] for hit in cheap["hits"]} == {"gn-day", "hd-loud"}
    rated = await search.find("gym rated 4.5+")
    # Both are rated 4.5 or more; their order is the ranking's business.
    assert {hit["branch_id"] for hit in rated["hits"]} == {"gn-24", "hd-quiet"}


async def test_a_price_past_the_index_column_is_left_out_not_the_branch(search):
    await search.announce(branch("gn-typo", "강남 오타짐", monthly_price_krw=5_900_000_000))
    await search.settle()
    [hit] = (await search.find("강남 오타짐"))["hits"]
    assert (hit["branch_id"], hit["monthly_price_krw"]) == ("gn-typo", None)


async def test_paging_is_stable(search):
    await seed(search)
    everything = await search.find("gym", size=4)
    ids = [hit["branch_id"] for hit in everything["hits"]]
    pages = [await search.find("gym", size=2, page=page) for page in (1, 2)]
    assert [hit["branch_id"] for page in pages for hit in page["hits"]] == ids
    assert pages[0]["total"] == 4


async def test_closure_and_update_reach_the_index_once_and_in_order(search):
    await seed(search)
    await search.announce(branch("gn-day", "강남 파워짐", version=3, updated=True, closed=True))
    stale = branch("gn-day", "강남 파워짐 (old)", version=2, updated=True)
    await search.announce(stale, stale)  # late and redelivered: ignored
    await search.settle()
    ids = {hit["branch_id"] for hit in (await search.find("강남 헬스장"))["hits"]}
    assert "gn-day" not in ids
    response = await search.client.get("/branches/gn-day", headers=MEMBER)
    assert response.status_code == 404


async def test_a_redelivered_review_counts_once(search):
    await seed(search)
    again = review("gn-day", 1, "별로")
    await search.announce(again, again)
    await search.announce(review("gn-day", 5, "좋아요", review_id=again.review_id))  # same revision, new event
    await search.settle()
    detail = (await search.client.get("/branches/gn-day", headers=MEMBER)).json()
    assert detail["review_count"] == 1
    assert detail["rating"] == 1.0
    await search.announce(review("gn-day", 4, "고쳐 씀: 괜찮아요", review_id=again.review_id, revision=2))  # an edit
    await search.settle()
    detail = (await search.client.get("/branches/gn-day", headers=MEMBER)).json()
    assert (detail["review_count"], detail["rating"]) == (1, 4.0)
    assert detail["reviews"][0]["text"] == "고쳐 씀: 괜찮아요"


async def test_branch_detail_reviews_and_suggestions(search):
    await seed(search)
    detail = await search.client.get("/branches/hd-quiet", headers=MEMBER)
    assert detail.status_code == 200
    body = detail.json()
    assert body["review_count"] == 3
    assert len(body["reviews"]) == 3
    assert "quiet" in body["tags"]
    page = (await search.client.get("/branches/hd-quiet/reviews", params={"limit": 2}, headers=MEMBER)).json()
    assert len(page["reviews"]) == 2
    assert page["next_before"]
    rest = await search.client.get(
        "/branches/hd-quiet/reviews", params={"limit": 2, "before": page["next_before"]}, headers=MEMBER
    )
    assert len(rest.json()["reviews"]) == 1
    suggestions = (await search.client.get("/suggest", params={"q": "강나"}, headers=MEMBER)).json()["suggestions"]
    texts = [item["text"] for item in suggestions]
    assert "강남역" in texts
    assert "강남 파워짐" in texts
    english = (await search.client.get("/suggest", params={"q": "iron"}, headers=MEMBER)).json()["suggestions"]
    assert english[0]["branch_id"] == "hd-quiet"


async def test_bad_queries_get_clear_refusals(search):
    await seed(search)
    cases = [
        ({"q": ""}, "empty search"),
        ({"q": "a" * 10_000}, "longer than 200"),
        ({"q": "gym\x00\x07"}, "control characters"),
        ({"q": "gym", "colour": "red"}, "unknown parameters"),
        ({"q": "gym", "facility": "helipad"}, "unknown facilities"),
        ({"q": "gym", "lat": "37.5"}, "both lat and lon"),
        ({"q": "gym", "size": "500"}, "less than or equal"),
    ]
    for params, reason in cases:
        response = await search.client.get("/search", params=params, headers=MEMBER)
        assert response.status_code == 422, (params, response.text)
        assert reason in response.text, (params, response.text)
    response = await search.client.post("/search", json={"q": "gym", "filters": {"sauna": True}}, headers=MEMBER)
    assert response.status_code == 422
    assert "sauna" in response.text
    assert (await search.client.get("/search", params={"q": "gym"})).status_code == 401


async def test_recommendations_from_a_branch_and_from_visits(search):
    from datetime import UTC, datetime

    from contracts import AccessGranted

    await seed(search)
    similar = (await search.client.get("/branches/hd-quiet/similar", headers=MEMBER)).json()["items"]
    assert similar[0]["branch_id"] == "hd-loud"
    assert "squat_rack" in similar[0]["shared"]
    member = uuid.uuid4()
    for _ in range(3):
        await search.announce(
            AccessGranted(
                attempt_id=uuid.uuid4(),
                branch_id="gn-day",
                gate_id="g1",
                direction="in",
                member_id=member,
                method="face",
                decided_at=datetime.now(UTC),
            )
        )
    mine = (await search.client.get("/me/recommendations", headers=headers(user_id=member))).json()
    assert mine["basis"] == "your visits"
    assert "gn-day" not in [item["branch_id"] for item in mine["items"]]
    assert mine["items"][0]["branch_id"] == "gn-24"  # nearby, shares the shower


async def test_an_operator_rebuilds_the_index_while_searches_go_on(search):
    import asyncio

    await seed(search)
    refused = await search.client.post("/admin/reindex", headers=MEMBER)
    assert refused.status_code == 403
    rebuild = asyncio.create_task(search.client.post("/admin/reindex", headers=headers(Role.OPERATOR)))
    seen = []
    while not rebuild.done():
        seen.append(len((await search.find("gym"))["hits"]))
        await asyncio.sleep(0.005)  # an in-process request need not yield to the rebuild
    assert set(seen) <= {4}  # never an empty or half-built index
    assert (await rebuild).json() == {"documents": 4, "backend": "tantivy"}
    assert len((await search.find("gym"))["hits"]) == 4
