"""The gate kiosk in chromium with a fake camera: Chromium plays a Y4M video made from a
test photo (or from a QR pass) as the webcam. An enrolled member walks in and the virtual
gate opens; an unknown face is refused with the reason on screen; a QR pass shown to the
camera opens the gate; with the platform unreachable the kiosk says the door stays shut."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import segno

from smartgym.demo import BRANCH, ENTRY_GATE, MEMBERS
from tests.support.browser import ARTIFACTS, assert_accessible, launch

FRAME = (640, 480)


def y4m(image: np.ndarray, path: Path, *, frames: int = 5) -> Path:
    """A still picture as a short Y4M video (Chromium loops it as the camera)."""
    width, height = FRAME
    scale = min(width / image.shape[1], height / image.shape[0])
    resized = cv2.resize(image, (int(image.shape[1] * scale), int(image.shape[0] * scale)))
    canvas = np.full((height, width, 3), 255, np.uint8)
    top, left = (height - resized.shape[0]) // 2, (width - resized.shape[1]) // 2
    canvas[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    planes = cv2.cvtColor(canvas, cv2.COLOR_BGR2YUV_I420).tobytes()
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            out.write(b"FRAME\n" + planes)
    return path


def photo_video(photo: Path, path: Path, *, top_share: float = 1.0) -> Path:
    """``top_share`` < 1 keeps the top of a full-length portrait, the face at a distance a
    kiosk sees."""
    image = cv2.imread(str(photo))
    assert image is not None, photo
    return y4m(image[: int(image.shape[0] * top_share)], path)


def qr_video(code: str, path: Path) -> Path:
    png = path.with_suffix(".png")
    segno.make(code, error="m").save(str(png), scale=4, border=4)
    image = cv2.imread(str(png))
    assert image is not None, png
    return y4m(image, path)


@pytest.fixture
def kiosk_page(playwright, stack, request):
    """kiosk_page(video) -> a kiosk page set up for the entry gate, watching ``video``."""
    opened = []

    def open_kiosk(video: Path):
        chromium = launch(
            playwright,
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={video}",
        )
        context = chromium.new_context(locale="en-US", viewport={"width": 1280, "height": 800}, permissions=["camera"])
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        opened.append((chromium, page, problems))
        page.goto(f"{stack.gateway}/kiosk")
        page.fill("#kiosk-client-id", stack.kiosk["client_id"])
        page.fill("#kiosk-client-secret", stack.kiosk["client_secret"])
        page.fill("#kiosk-gate", ENTRY_GATE)
        page.click("#kiosk-start")
        page.wait_for_selector("#camera")
        return page

    yield open_kiosk
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for index, (chromium, page, problems) in enumerate(opened):
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{index}.png"))
        chromium.close()
        assert not problems, problems


def enrol(stack, email: str, photo: Path) -> None:
    member = stack.login(email)
    with httpx.Client(base_url=stack.gateway, timeout=30) as client:
        consent = client.post(
            "/api/auth/me/face/consent", json={"text_version": "2026-11", "accepted": True}, headers=member
        )
        assert consent.status_code in (201, 409), consent.text
        enrolled = client.post(
            "/api/auth/me/face", content=photo.read_bytes(), headers={**member, "content-type": "image/jpeg"}
        )
        assert enrolled.status_code == 201, enrolled.text


def test_an_enrolled_member_walks_in_and_the_gate_opens(stack, kiosk_page, tmp_path):
    photo = stack.photos / "member1.jpg"
    enrol(stack, MEMBERS[0], photo)
    before = stack.log_size()
    page = kiosk_page(photo_video(photo, tmp_path / "member1.y4m"))
    # access learns the new face through an event: the kiosk keeps trying meanwhile.
    page.wait_for_selector("#reason[data-reason='granted']", timeout=45_000)
    assert page.locator("#decision").inner_text() == "Come in!"
    # The opening itself: a closing of an earlier test's opening may be logged after `before`.
    stack.wait_for_log(f"virtual gate {BRANCH} #1: OPEN", after=before)
    # No personal data on the screen: no email, no member id.
    text = page.locator("body").inner_text()
    assert MEMBERS[0] not in text
    assert "member1" not in text
    assert_accessible(page)


def test_an_unknown_face_is_refused_with_the_reason_and_offline_is_fail_secure(stack, kiosk_page, tmp_path):
    before = stack.log_size()
    page = kiosk_page(photo_video(stack.photos / "member2.jpg", tmp_path / "member2.y4m", top_share=0.4))
    reason = page.locator("#reason[data-reason]")
    reason.wait_for(timeout=30_000)
    assert reason.get_attribute("data-reason") in ("face_not_recognised", "match_below_threshold")
    assert "QR pass" in reason.inner_text()
    assert page.locator(".kiosk-screen").get_attribute("data-state") == "denied"
    assert_accessible(page)
    time.sleep(0.5)
    assert "OPEN" not in stack.up_log.read_bytes()[before:].decode(errors="replace")
    # The platform becomes unreachable: the kiosk says the door stays locked.
    page.route("**/api/**", lambda route: route.abort("connectionrefused"))
    page.wait_for_selector(".kiosk-screen[data-state='offline']", timeout=20_000)
    assert "locked" in page.locator("#reason").inner_text()
    page.screenshot(path=str(ARTIFACTS / "kiosk-offline.png"))
    page.unroute("**/api/**")
    page.wait_for_selector(".kiosk-screen:not([data-state='offline'])", timeout=20_000)


def test_a_qr_pass_shown_to_the_camera_opens_the_gate(stack, kiosk_page, tmp_path):
    member = stack.login(MEMBERS[1])
    issued = httpx.post(
        f"{stack.gateway}/api/auth/me/entry-pass", json={"branch_id": BRANCH}, headers=member, timeout=10
    )
    assert issued.status_code in (200, 201), issued.text
    before = stack.log_size()
    page = kiosk_page(qr_video(issued.json()["code"], tmp_path / "pass.y4m"))
    page.wait_for_selector("#reason[data-reason='granted']", timeout=30_000)
    # The opening itself: a closing of an earlier test's opening may be logged after `before`.
    stack.wait_for_log(f"virtual gate {BRANCH} #1: OPEN", after=before)
    log = httpx.get(
        f"{stack.gateway}/api/access/v1/access-log",
        params={"branch_id": BRANCH, "method": "qr", "outcome": "granted"},
        headers=stack.login("owner@demo.smartgym.example"),
    ).json()
    assert log["items"], log
