"""Every check of the task judge, on photos made for it, through helper's API and bus."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

from PIL import Image

from common.security import Role
from contracts import TaskSubmitted
from tests.helper.images import HEIC, blurred, darkened, jpeg, png, scene
from tests.support import tokens


def codes(verdict) -> list[str]:
    return [reason.code for reason in verdict.reasons]


async def test_a_good_task_without_a_trained_model_waits_for_a_person(helper_app):
    response = await helper_app.submit(jpeg(scene(1)))
    assert response.status_code == 201, response.text
    verdict = await helper_app.verdict(response.json()["id"])
    assert verdict.outcome == "needs_review"
    assert verdict.confidence == 0.0
    assert codes(verdict) == ["no_model"]
    assert verdict.model_version == "none"
    mine = (await helper_app.client.get(f"/v1/me/tasks/{verdict.task_id}", headers=helper_app.helper)).json()
    assert mine["status"] == "judged"
    assert mine["verdict"] == "needs_review"
    assert mine["reasons"][0]["code"] == "no_model"


async def test_a_photo_sent_again_is_a_duplicate_even_resized_and_re_encoded(helper_app):
    first = await helper_app.submit(jpeg(scene(2)))
    await helper_app.verdict(first.json()["id"])
    again = await helper_app.submit(png(scene(2).resize((500, 375))))
    verdict = await helper_app.verdict(again.json()["id"])
    assert verdict.outcome == "fail"
    assert "duplicate_photo" in codes(verdict)
    assert first.json()["id"] in verdict.reasons[0].message
    other = await helper_app.submit(jpeg(scene(3)))
    assert "duplicate_photo" not in codes(await helper_app.verdict(other.json()["id"]))


async def test_blurred_dark_and_old_photos_fail_each_with_its_reason(helper_app):
    blurry = await helper_app.submit(jpeg(blurred(scene(4))))
    dark = await helper_app.submit(jpeg(darkened(scene(5))))
    old = await helper_app.submit(jpeg(scene(6), taken_at=datetime.now(UTC) - timedelta(days=2)))
    blurry_verdict = await helper_app.verdict(blurry.json()["id"])
    assert blurry_verdict.outcome == "fail"
    assert codes(blurry_verdict) == ["blurred"]
    assert blurry_verdict.confidence == 1.0
    assert "too_dark" in codes(await helper_app.verdict(dark.json()["id"]))
    assert codes(await helper_app.verdict(old.json()["id"])) == ["photo_too_old"]


async def test_fewer_photos_than_the_task_type_expects_fail(helper_app):
    await helper_app.task_type("fold", expected_photos=3)
    response = await helper_app.submit(jpeg(scene(7)), jpeg(scene(8)), task_type="fold")
    assert response.json()["photos"] == 2
    verdict = await helper_app.verdict(response.json()["id"])
    assert codes(verdict) == ["too_few_photos"]


async def test_one_picture_twice_in_one_task_is_a_duplicate(helper_app):
    await helper_app.task_type("dry", expected_photos=2)
    response = await helper_app.submit(jpeg(scene(9)), jpeg(scene(9), quality=70), task_type="dry")
    assert "duplicate_photo" in codes(await helper_app.verdict(response.json()["id"]))


async def test_heic_and_other_formats_are_refused_with_a_reason(helper_app):
    heic = await helper_app.submit(HEIC, names=("IMG_0001.HEIC",))
    assert heic.status_code == 415
    assert "HEIC" in heic.json()["detail"]
    gif = io.BytesIO()
    scene(10).save(gif, format="GIF")
    other = await helper_app.submit(gif.getvalue())
    assert other.status_code == 415
    assert "JPEG or PNG" in other.json()["detail"]
    broken = await helper_app.submit(jpeg(scene(10))[:300])
    assert broken.status_code == 422
    assert "decoded" in broken.json()["detail"]
    too_many = await helper_app.submit(*[jpeg(scene(11 + index)) for index in range(6)])
    assert too_many.status_code == 422
    assert helper_app.of(TaskSubmitted) == []


async def test_phone_sized_photos_are_accepted(helper_app):
    big = png(scene(15, size=(1400, 1000)))
    assert 2_000_000 < len(big) < 4 * 1024 * 1024
    response = await helper_app.submit(big, jpeg(scene(16, size=(2000, 1500)), quality=80))
    assert response.status_code == 201, response.text


async def test_an_oversized_photo_is_refused(open_helper):
    async with open_helper(helper_photo_max_bytes=50_000) as opened:
        await opened.task_type()
        await opened.bind()
        response = await opened.submit(png(scene(12)))
        assert response.status_code == 413, response.text
        assert "exceeds" in response.json()["detail"]


async def test_exif_is_stripped_but_its_capture_time_is_kept(helper_app):
    taken = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    # The camera writes local time without an offset: the branch's zone says which.
    local = taken.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Seoul")).replace(tzinfo=None)
    response = await helper_app.submit(jpeg(scene(13), taken_at=local))
    task_id = response.json()["id"]
    verdict = await helper_app.verdict(task_id)
    assert verdict.photos[0].captured_at == taken
    assert codes(verdict) == ["no_model"]
    stored = await helper_app.client.get(f"/v1/tasks/{task_id}/photos/0", headers=helper_app.owner)
    assert stored.status_code == 200
    assert stored.headers["content-type"] == "image/jpeg"
    assert dict(Image.open(io.BytesIO(stored.content)).getexif()) == {}


async def test_a_retried_upload_makes_one_task(helper_app):
    photo = jpeg(scene(14))
    first = await helper_app.submit(photo, key="retry-key-0001")
    second = await helper_app.submit(photo, key="retry-key-0001")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    await helper_app.verdict(first.json()["id"])
    assert len(helper_app.of(TaskSubmitted)) == 1


async def test_unbound_helpers_unknown_task_types_and_members_are_refused(helper_app):
    helper_app.helper_id = uuid.uuid4()  # nobody bound this helper
    unbound = await helper_app.submit(jpeg(scene(17)))
    assert unbound.status_code == 403
    assert "not bound" in unbound.json()["detail"]
    await helper_app.bind()
    unknown = await helper_app.submit(jpeg(scene(17)), task_type="polish")
    assert unknown.status_code == 404
    member = tokens.bearer(uuid.uuid4(), [Role.CUSTOMER])
    assert (await helper_app.client.get("/v1/me/balance", headers=member)).status_code == 403
    listing = await helper_app.client.get("/v1/branches/gangnam/task-types", headers=helper_app.helper)
    assert [row["code"] for row in listing.json()] == ["wash"]
    assert (
        await helper_app.client.get("/v1/branches/hongdae/task-types", headers=helper_app.helper)
    ).status_code == 403
