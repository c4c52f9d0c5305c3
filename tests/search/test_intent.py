"""The hot path's reading of queries: places, near me, hours, facilities, attributes,
price and rating, in Korean and English, with typos — rules and data, no model."""

from __future__ import annotations

import pytest

from search.catalogue import _compose
from search.intent import parse
from search.text import analyze, jamo


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("강남역 근처 24시간 샤워실 있는 헬스장", {"place": "gangnam_stn", "open_24h": True, "facilities": ["shower"]}),
        ("강낭역 샤워싷", {"place": "gangnam_stn", "facilities": ["shower"]}),
        (
            "quiet gym near Hongde with sqaut racks",
            {"place": "hongdae_stn", "facilities": ["squat_rack"], "attributes": ["quiet"]},
        ),
        ("gangam staton showr", {"place": "gangnam_stn", "facilities": ["shower"]}),
        ("5만원 이하 잠실 헬스장", {"place": "jamsil_stn", "price_max_krw": 50_000}),
        ("gym under 60,000 won in mapo rated 4.5+", {"place": "mapo_gu", "price_max_krw": 60_000, "rating_min": 4.5}),
        ("under 70k gym", {"price_max_krw": 70_000}),
        ("평점 4점 이상 헬스장", {"rating_min": 4.0}),
        ("내 주변 헬스장", {"near_me": True}),
        ("강남역 근처", {"place": "gangnam_stn", "near_me": False}),
        ("open now gym near city hall", {"place": "cityhall_stn", "open_now": True}),
        ("지금 영업중인 곳", {"open_now": True}),
        ("crowded gym", {"avoid_attributes": ["quiet"]}),
        ("affordable gym near guro digital complex", {"place": "guro_digital_stn", "cheap": True, "free_words": []}),
        ("아이언짐 역삼", {"place": "yeoksam_stn", "free_words": ["아이언짐"]}),
    ],
)
def test_queries_are_read(query, expected):
    parsed = parse(query)
    actual = {
        "place": parsed.place.id if parsed.place else None,
        "near_me": parsed.near_me,
        "open_24h": parsed.open_24h,
        "open_now": parsed.open_now,
        "facilities": parsed.facilities,
        "attributes": parsed.attributes,
        "avoid_attributes": parsed.avoid_attributes,
        "price_max_krw": parsed.price_max_krw,
        "rating_min": parsed.rating_min,
        "cheap": parsed.cheap,
        "free_words": parsed.free_words,
    }
    assert {key: actual[key] for key in expected} == expected


def test_korean_is_cut_into_morphemes_and_bigrams():
    terms = analyze("강남구 조용한 헬스장")
    assert {"강남", "남구", "조용", "헬스장"} <= set(terms)


def test_jamo_round_trip():
    for word in ("샤워실", "강남역", "헬스장", "아이언짐", "닭"):
        assert _compose(jamo(word)) == word
