"""Notice texts in Korean and English. Each template is formatted with the event's fields;
a missing translation falls back to Korean, the language of most members."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Locale = Literal["ko", "en"]
LOCALES: tuple[Locale, ...] = ("ko", "en")
DEFAULT_LOCALE: Locale = "ko"


@dataclass(frozen=True)
class Text:
    title: str
    body: str


TEMPLATES: dict[str, dict[Locale, Text]] = {
    "welcome": {
        "ko": Text(
            "SmartGym에 오신 것을 환영합니다",
            "계정이 준비되었습니다. 얼굴을 등록하거나 QR 코드로 어느 지점이든 입장하세요.",
        ),
        "en": Text("Welcome to SmartGym", "Your account is ready. Enrol your face or use your QR code at any branch."),
    },
    "equipment_fault": {
        "ko": Text("[{branch_id}] {name} 고장", "{name}({kind})이(가) 응답하지 않습니다: {reason}"),
        "en": Text("[{branch_id}] {name} is down", "{name} ({kind}) stopped answering: {reason}"),
    },
    "equipment_recovered": {
        "ko": Text("[{branch_id}] {name} 복구", "{name}이(가) 다시 정상입니다 (중단 {down_for})."),
        "en": Text("[{branch_id}] {name} is back", "{name} works again (down for {down_for})."),
    },
    "equipment_escalated": {
        "ko": Text("[긴급] {branch_id} {name} 미확인 고장", "{name} 고장이 확인되지 않았습니다: {reason}"),
        "en": Text("[Urgent] {branch_id} {name} fault unacknowledged", "Nobody has taken the {name} fault: {reason}"),
    },
    "equipment_withdrawn": {
        "ko": Text(
            "[{branch_id}] {name} 고장 종료", "{name}이(가) 철거되어 고장이 종료되었습니다. 조치할 필요가 없습니다."
        ),
        "en": Text("[{branch_id}] {name} fault closed", "{name} was retired, so its fault is closed. Nothing to do."),
    },
    "task_approved": {
        "ko": Text("작업 승인", "작업이 승인되었습니다. {payout_krw}원이 지급됩니다."),
        "en": Text("Task approved", "Your task was approved. You will be paid ₩{payout_krw}."),
    },
    "task_rejected": {
        "ko": Text("작업 반려", "작업이 반려되었습니다: {reason}"),
        "en": Text("Task rejected", "Your task was rejected: {reason}"),
    },
    "task_review_overdue": {
        "ko": Text("[{branch_id}] 검토 대기 작업", "'{title}' 작업이 {waited} 동안 검토를 기다리고 있습니다."),
        "en": Text("[{branch_id}] A task is waiting", "'{title}' has waited {waited} for your review."),
    },
    "branch_profile": {
        "ko": Text("[{branch_id}] 지점 선호도 저장", "회원 선호 주제: {topics}"),
        "en": Text("[{branch_id}] Branch profile saved", "Members' topics: {topics}"),
    },
    "gate_denials": {
        "ko": Text(
            "[{branch_id}] {gate_id} 반복 거부",
            "{window_min}분 동안 {count}회 입장이 거부되었습니다 (마지막 사유: {reason}).",
        ),
        "en": Text(
            "[{branch_id}] Repeated refusals at {gate_id}", "{count} refusals in {window_min} min (last: {reason})."
        ),
    },
    "friend_running": {
        "ko": Text("친구가 달리기 시작", "친구가 방금 달리기를 시작했어요. 실시간으로 응원해 보세요!"),
        "en": Text("Your friend is running", "A friend just started a run. Watch it live and cheer!"),
    },
    "race_result": {
        "ko": Text("레이스 결과", "{place}"),
        "en": Text("Race results", "{place}"),
    },
    "steps_overtaken": {
        "ko": Text("걸음 수 순위 변동", "친구가 {steps}걸음으로 앞질렀어요. 지금 순위: {rank}위"),
        "en": Text("Overtaken on steps", "A friend passed you with {steps} steps. You are now #{rank}."),
    },
    "friend_accepted": {
        "ko": Text("친구 요청 수락", "친구 요청이 수락되었어요. 이제 서로의 달리기를 응원할 수 있어요!"),
        "en": Text("Friend request accepted", "Your friend request was accepted. Cheer each other's runs now!"),
    },
    "outing_invited": {
        "ko": Text("함께 걷기 초대", "'{title}'에 초대받았어요. 참여할지 알려 주세요."),
        "en": Text("Invitation to walk together", "You are invited to '{title}'. Let them know if you join."),
    },
    "outing_started": {
        "ko": Text("함께 걷기 시작", "'{title}'이(가) 시작되었어요. 지금 합류하세요!"),
        "en": Text("Walk together started", "'{title}' has started. Join now!"),
    },
    "outing_ended_host_ended": {
        "ko": Text("함께 걷기 종료", "호스트가 '{title}'을(를) 마쳤어요. 수고하셨어요!"),
        "en": Text("Walk together ended", "The host ended '{title}'. Well done!"),
    },
    "outing_ended_time_up": {
        "ko": Text("함께 걷기 종료", "'{title}' 시간이 다 되어 끝났어요. 수고하셨어요!"),
        "en": Text("Walk together ended", "Time is up for '{title}'. Well done!"),
    },
    "step_goal_reached_day": {
        "ko": Text("오늘의 걸음 목표 달성", "'{title}': 함께 {steps}걸음으로 오늘 목표 {target}걸음을 달성했어요!"),
        "en": Text("Today's step goal reached", "'{title}': together you walked {steps} steps, past today's {target}!"),
    },
    "step_goal_reached_week": {
        "ko": Text("이번 주 걸음 목표 달성", "'{title}': 함께 {steps}걸음으로 이번 주 목표 {target}걸음을 달성했어요!"),
        "en": Text(
            "This week's step goal reached", "'{title}': together you walked {steps} steps, past this week's {target}!"
        ),
    },
    "password_reset": {
        "ko": Text("비밀번호 재설정", "비밀번호 재설정이 요청되었습니다. 본인이 아니라면 무시하세요."),
        "en": Text("Password reset", "A password reset was requested. Ignore this if it was not you."),
    },
    # The SMS to a phone-only account: the code is the message (an SMS has no data part).
    "password_reset_sms": {
        "ko": Text("SmartGym", "[SmartGym] 비밀번호 재설정 코드: {code} (30분 안에 사용, 본인이 아니라면 무시하세요)"),
        "en": Text("SmartGym", "[SmartGym] Password reset code: {code} (use within 30 minutes; ignore if not you)"),
    },
}


def locale_of(value: str | None) -> Locale:
    return "en" if value == "en" else DEFAULT_LOCALE


def render(template_name: str, locale: str | None, fields: Mapping[str, object]) -> Text:
    by_locale = TEMPLATES[template_name]
    template = by_locale.get(locale_of(locale), by_locale[DEFAULT_LOCALE])
    return Text(template.title.format(**fields)[:200], template.body.format(**fields))
