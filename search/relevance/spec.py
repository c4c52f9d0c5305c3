"""The relevance set's queries and what each one needs (the judge's side). Judgments are
computed from the corpus's hidden truths by :func:`search.relevance.judge` and written
with the queries to ``queries.json``; the engine never sees this file."""

from __future__ import annotations

from typing import Any

# Callers' positions for "near me" queries.
GWANGHWAMUN = (37.5716, 126.9768)
SADANG = (37.4765, 126.9816)
JONGNO = (37.5714, 126.9918)
JAMSIL = (37.5133, 127.1001)


def q(text: str, lang: str, **need: Any) -> dict[str, Any]:
    caller = need.pop("caller", None)
    item: dict[str, Any] = {"q": text, "lang": lang, "need": need}
    if caller:
        item["lat"], item["lon"] = caller
    return item


QUERIES: list[dict[str, Any]] = [
    # -- Korean --------------------------------------------------------------------------
    q("강남역 근처 24시간 샤워실 있는 헬스장", "ko", place="gangnam_stn", open_24h=True, facilities=["shower"]),
    q("홍대 조용한 헬스장", "ko", place="hongdae_stn", attributes=["quiet"]),
    q("잠실역 스쿼트랙 있는 곳", "ko", place="jamsil_stn", facilities=["squat_rack"]),
    q("역삼 사우나 있는 헬스장", "ko", place="yeoksam_stn", facilities=["sauna"]),
    q("신촌 피티 가능한 헬스장", "ko", place="sinchon_stn", facilities=["pt"]),
    q("5만원 이하 건대 헬스장", "ko", place="konkuk_stn", price_max=50_000),
    q("여의도 주차 되는 24시간 헬스장", "ko", place="yeouido_stn", facilities=["parking"], open_24h=True),
    q("강낭역 샤워싷 있는 헬스장", "ko", place="gangnam_stn", facilities=["shower"]),
    q("선릉역 깨끗한 헬스장", "ko", place="seolleung_stn", attributes=["clean"]),
    q("왕십리 요가", "ko", place="wangsimni_stn", facilities=["yoga"]),
    q("마포구 필라테스", "ko", place="mapo_gu", facilities=["pilates"]),
    q("송파구 24시 헬스장", "ko", place="songpa_gu", open_24h=True),
    q("성수 넓은 헬스장", "ko", place="seongsu_stn", attributes=["spacious"]),
    q("이태원 친절한 피티", "ko", place="itaewon_stn", facilities=["pt"], attributes=["friendly"]),
    q("내 주변 헬스장", "ko", near=True, caller=GWANGHWAMUN),
    q("근처 24시간 헬스장", "ko", near=True, open_24h=True, caller=SADANG),
    q("평점 4점 이상 강남 헬스장", "ko", place="gangnam_gu", rating_min=4.0),
    q("홍대입구역 락커 있는 곳", "ko", place="hongdae_stn", facilities=["locker"]),
    q("신림 저렴한 헬스장", "ko", place="sillim_stn", price_max=50_000),
    q("노원역 샤워실 수건 제공", "ko", place="nowon_stn", facilities=["shower", "towels"]),
    q("교대역 조용하고 깨끗한 헬스장", "ko", place="gyodae_stn", attributes=["quiet", "clean"]),
    q("합정 최신 기구 헬스장", "ko", place="hapjeong_stn", attributes=["new_equipment"]),
    q("압구정 파워랙 있는 24시간", "ko", place="apgujeong_stn", facilities=["squat_rack"], open_24h=True),
    q("천호역 주차장 있는 헬스장", "ko", place="cheonho_stn", facilities=["parking"]),
    q("공덕역 샤워실 헬스장 6만원 이하", "ko", place="gongdeok_stn", facilities=["shower"], price_max=60_000),
    q("서울역 근처 지금 영업중인 헬스장", "ko", place="seoul_stn", open_now=True),
    q("잠실 조용한 곳 스쿼트렉", "ko", place="jamsil_stn", facilities=["squat_rack"], attributes=["quiet"]),
    q("구로디지털단지 24시간", "ko", place="guro_digital_stn", open_24h=True),
    q("수유역 헬스장 평점 좋은 곳", "ko", place="suyu_stn", rating_min=4.0),
    q("목동 프리웨이트 헬스장", "ko", place="mokdong_stn", facilities=["free_weights"]),
    q("명동 유산소 헬스장", "ko", place="myeongdong_stn", facilities=["cardio"]),
    q("을지로 샤워 되는 곳 친절한", "ko", place="euljiro_stn", facilities=["shower"], attributes=["friendly"]),
    # -- English -------------------------------------------------------------------------
    q(
        "quiet gym near Hongdae with squat racks",
        "en",
        place="hongdae_stn",
        facilities=["squat_rack"],
        attributes=["quiet"],
    ),
    q("24 hour gym near gangnam station with shower", "en", place="gangnam_stn", open_24h=True, facilities=["shower"]),
    q("gym in jamsil with sauna", "en", place="jamsil_stn", facilities=["sauna"]),
    q("cheap gym near sinchon", "en", place="sinchon_stn", price_max=50_000),
    q("clean gym in yeoksam", "en", place="yeoksam_stn", attributes=["clean"]),
    q("pilates in mapo", "en", place="mapo_gu", facilities=["pilates"]),
    q("gym with parking near yeouido", "en", place="yeouido_stn", facilities=["parking"]),
    q("squat rack gym near konkuk open 24/7", "en", place="konkuk_stn", facilities=["squat_rack"], open_24h=True),
    q("gangam staton showr", "en", place="gangnam_stn", facilities=["shower"]),
    q("quite gym in seongsu", "en", place="seongsu_stn", attributes=["quiet"]),
    q("gym near me with pt", "en", near=True, facilities=["pt"], caller=JONGNO),
    q("open now gym near city hall", "en", place="cityhall_stn", open_now=True),
    q("gym under 60,000 won near itaewon", "en", place="itaewon_stn", price_max=60_000),
    q("highly rated gym in songpa", "en", place="songpa_gu", rating_min=4.0),
    q("friendly gym near sadang", "en", place="sadang_stn", attributes=["friendly"]),
    q(
        "spacious gym near wangsimni with free weights",
        "en",
        place="wangsimni_stn",
        facilities=["free_weights"],
        attributes=["spacious"],
    ),
    q("yoga near apgujeong", "en", place="apgujeong_stn", facilities=["yoga"]),
    q("gym with lockers and towels near gongdeok", "en", place="gongdeok_stn", facilities=["locker", "towels"]),
    q("new equipment gym near samseong", "en", place="samseong_stn", attributes=["new_equipment"]),
    q("24h gym in gwanak with shower", "en", place="gwanak_gu", open_24h=True, facilities=["shower"]),
    q("gym near hongik university station with sauna", "en", place="hongdae_stn", facilities=["sauna"]),
    q("treadmill gym near sinsa", "en", place="sinsa_stn", facilities=["cardio"]),
    q("free weights in gangnam", "en", place="gangnam_gu", facilities=["free_weights"]),
    q("gym rated 4+ near jamsil station", "en", place="jamsil_stn", rating_min=4.0),
    q("sqaut racks near seolleung", "en", place="seolleung_stn", facilities=["squat_rack"]),
    q("cardio and showers near nowon station", "en", place="nowon_stn", facilities=["cardio", "shower"]),
    q("quiet clean gym near ewha", "en", place="ewha_stn", attributes=["quiet", "clean"]),
    q("gym near me open 24 hours", "en", near=True, open_24h=True, caller=JAMSIL),
    q("personal training near cheongdam", "en", place="cheongdam_stn", facilities=["pt"]),
    q("affordable gym near guro digital complex", "en", place="guro_digital_stn", price_max=50_000),
]

# Branches asked for by name (with a typo or without spaces), chosen from the corpus.
NAME_QUERIES: list[tuple[int, str]] = [(11, "ko"), (42, "ko"), (7, "en"), (58, "en")]
