"""Branch photos: uploaded by the branch's owner, checked and re-encoded, kept in the
photo store, published with the profile, deleted from both."""

from __future__ import annotations

import io
import uuid

from PIL import Image

from common.security import Role
from contracts import BranchInfoUpdated
from tests.branch_owner.conftest import BRANCH
from tests.branch_owner.test_console import put_profile
from tests.support import tokens
from tests.support.waiting import eventually


def picture(fmt: str = "JPEG", size: tuple[int, int] = (800, 600), exif: bool = False) -> bytes:
    image = Image.new("RGB", size, (40, 120, 200))
    out = io.BytesIO()
    if exif:
        tags = Image.Exif()
        tags[0x010F] = "PhoneMaker"  # Make
        image.save(out, fmt, exif=tags)
    else:
        image.save(out, fmt)
    return out.getvalue()


def upload(console, data: bytes, content_type: str = "image/jpeg", headers=None):
    return console.client.post(
        f"/v1/branches/{BRANCH}/photos",
        content=data,
        headers={**(headers or console.owner), "content-type": content_type},
    )


async def test_an_owner_uploads_lists_and_deletes_branch_photos(console, tmp_path):
    assert (await upload(console, picture())).status_code == 409  # no profile yet
    await put_profile(console)
    added = await upload(console, picture(size=(3000, 1500), exif=True))
    assert added.status_code == 201, added.text
    photo = added.json()
    assert (photo["width"], photo["height"]) == (2048, 1024)  # shrunk to the longest side
    png = await upload(console, picture("PNG", (300, 300)), "image/png")
    assert png.status_code == 201, png.text

    listed = (await console.client.get(f"/v1/branches/{BRANCH}/photos", headers=console.owner)).json()
    assert [item["id"] for item in listed] == [photo["id"], png.json()["id"]]
    member = tokens.bearer(uuid.uuid4(), [Role.CUSTOMER])
    path = photo["url"].removeprefix("/api/branch-owner")
    assert path == f"/v1/branches/{BRANCH}/photos/{photo['id']}"
    served = await console.client.get(path, headers=member)
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/jpeg"
    kept = Image.open(io.BytesIO(served.content))
    assert kept.size == (2048, 1024)
    assert not kept.getexif()  # the owner's phone metadata did not survive
    profile = (await console.client.get(f"/v1/branches/{BRANCH}", headers=member)).json()
    assert [item["id"] for item in profile["photos"]] == [photo["id"], png.json()["id"]]

    await eventually(lambda: len(console.of(BranchInfoUpdated)) == 2, timeout=10)
    assert console.of(BranchInfoUpdated)[-1].photo_urls == (photo["url"], png.json()["url"])

    deleted = await console.client.delete(path, headers=console.owner)
    assert deleted.status_code == 204
    assert (await console.client.get(path, headers=member)).status_code == 404
    assert (await console.client.delete(path, headers=console.owner)).status_code == 404
    assert not list((tmp_path / "branch-photos" / BRANCH).glob(f"{photo['id']}*"))
    await eventually(lambda: len(console.of(BranchInfoUpdated)) == 3, timeout=10)
    assert console.of(BranchInfoUpdated)[-1].photo_urls == (png.json()["url"],)


async def test_photo_uploads_are_validated_with_reasons(console):
    await put_profile(console)
    cases = [
        (b"", "image/jpeg", 422, "empty file"),
        (b"GIF89a" + b"\0" * 100, "image/gif", 415, "send the photo as image/jpeg, image/png or image/webp"),
        (b"just some text, not a picture at all", "image/jpeg", 415, "not a JPEG, PNG or WebP image"),
        (picture()[:200], "image/jpeg", 422, "the image cannot be decoded (damaged or truncated)"),
        (picture("PNG", (800, 600)), "image/jpeg", 201, None),  # the header lied, the content decides
        (picture(size=(32, 32)), "image/jpeg", 422, "photo of 32x32 pixels is too small (64 at least)"),
        (b"\xff\xd8\xff" + b"\0" * (3 * 1024 * 1024 + 10), "image/jpeg", 413, None),
    ]
    for data, content_type, expected, reason in cases:
        answer = await upload(console, data, content_type)
        assert answer.status_code == expected, (content_type, len(data), answer.text)
        if reason:
            assert answer.json()["detail"] == reason

    other_owner = tokens.bearer(uuid.uuid4(), [Role.BRANCH_OWNER], ("hongdae",))
    refused = await upload(console, picture(), headers=other_owner)
    assert refused.status_code == 403
    assert refused.json()["detail"] == "not permitted for this branch"
    member = tokens.bearer(uuid.uuid4(), [Role.CUSTOMER])
    assert (await upload(console, picture(), headers=member)).status_code == 403
    [kept] = (await console.client.get(f"/v1/branches/{BRANCH}/photos", headers=member)).json()
    path = kept["url"].removeprefix("/api/branch-owner")
    assert (await console.client.delete(path, headers=other_owner)).status_code == 403
    assert (await console.client.get(f"/v1/branches/{BRANCH}/photos/not-a-uuid", headers=member)).status_code == 422


async def test_a_branch_shows_at_most_twenty_photos(console):
    links = [f"https://example.com/{index}.jpg" for index in range(19)]
    await put_profile(console, photo_urls=links)
    assert (await upload(console, picture(size=(100, 100)))).status_code == 201
    full = await upload(console, picture(size=(100, 100)))
    assert full.status_code == 409
    assert full.json()["detail"] == "a branch shows at most 20 photos: delete one first"
    too_many_links = await console.client.put(
        f"/v1/branches/{BRANCH}",
        json={
            "name": "SmartGym Gangnam",
            "address": "Seoul",
            "lat": 37.5,
            "lon": 127.0,
            "photo_urls": [*links, "https://example.com/20.jpg"],
        },
        headers=console.owner,
    )
    assert too_many_links.status_code == 422
