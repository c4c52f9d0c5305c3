"""Photos in S3 (moto's server on loopback speaking the S3 wire protocol) and the learned
half of the judge: a real ONNX model from a pack, swapped while serving."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import boto3
import onnx
import pytest
from onnx import TensorProto, helper

from common.objectstore import S3Store
from common.security import Role
from helper.classifier import ClassifierHolder, PackError, write_pack
from helper.store import KEY_PATTERN, PhotoNotFound
from tests.helper.images import jpeg, scene
from tests.support import tokens
from tests.support.apps import free_port

BUCKET = "task-photos-test"


@pytest.fixture
def moto_s3(tmp_path):
    port = free_port()
    log = (tmp_path / "moto.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        yield url, client
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


async def test_task_photos_live_in_s3_and_only_their_keys_travel(open_helper, moto_s3):
    url, client = moto_s3
    async with open_helper(
        helper_photo_store="s3",
        helper_s3_endpoint=url,
        helper_s3_bucket=BUCKET,
        helper_s3_region="us-east-1",
        helper_s3_access_key_id="test",
        helper_s3_secret_access_key="test",
    ) as opened:
        await opened.task_type()
        await opened.bind()
        response = await opened.submit(jpeg(scene(40)))
        assert response.status_code == 201, response.text
        verdict = await opened.verdict(response.json()["id"])
        key = verdict.photos[0].key
        stored = client.get_object(Bucket=BUCKET, Key=key)
        assert stored["ContentType"] == "image/jpeg"
        assert len(stored["Body"].read()) == verdict.photos[0].size_bytes
        photo = await opened.client.get(f"/v1/tasks/{verdict.task_id}/photos/0", headers=opened.owner)
        assert photo.status_code == 200
        assert codes_of(verdict) == ["no_model"]  # the judge read the photo back from S3


def codes_of(verdict) -> list[str]:
    return [reason.code for reason in verdict.reasons]


async def test_an_s3_key_that_is_not_there_is_not_found(moto_s3):
    url, _ = moto_s3
    s3 = S3Store(
        boto3.client(
            "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
        ),
        BUCKET,
        key_pattern=KEY_PATTERN,
    )
    with pytest.raises(PhotoNotFound):
        await s3.get(f"gangnam/{uuid.uuid4()}/0.jpg")
    with pytest.raises(PhotoNotFound):
        await s3.get("../../etc/passwd")
    await s3.close()


def brightness_model(gain: float, offset: float) -> bytes:
    """A tiny real model: sigmoid(gain * (mean pixel - offset)) per photo."""
    nodes = [
        helper.make_node("ReduceMean", ["x", "axes"], ["mean"], keepdims=0),
        helper.make_node("Sub", ["mean", "offset"], ["centred"]),
        helper.make_node("Mul", ["centred", "gain"], ["scaled"]),
        helper.make_node("Sigmoid", ["scaled"], ["p"]),
        helper.make_node("Unsqueeze", ["p", "one"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "done",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])],
        initializer=[
            helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]),
            helper.make_tensor("offset", TensorProto.FLOAT, [], [offset]),
            helper.make_tensor("gain", TensorProto.FLOAT, [], [gain]),
            helper.make_tensor("one", TensorProto.INT64, [1], [1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


async def test_a_deployed_model_decides_and_a_new_one_swaps_in(open_helper, tmp_path):
    sure = write_pack(
        tmp_path / "packs" / "a", brightness_model(40.0, 0.2), name="done", version="1.0.0", input_name="x", size=32
    )
    unsure = write_pack(
        tmp_path / "packs" / "b", brightness_model(0.0, 0.0), name="done", version="1.1.0", input_name="x", size=32
    )
    assert ClassifierHolder().version == "none"
    async with open_helper(judge_model_pack=sure, judge_packs_dir=tmp_path / "packs") as opened:
        operator = tokens.bearer(uuid.uuid4(), [Role.OPERATOR])
        current = await opened.client.get("/v1/judge/model", headers=operator)
        assert current.json() == {"model_version": "done@1.0.0"}
        await opened.task_type()
        await opened.bind()
        first = await opened.verdict((await opened.submit(jpeg(scene(41)))).json()["id"])
        assert (first.outcome, first.model_version, first.reasons) == ("pass", "done@1.0.0", ())
        assert first.confidence > 0.9
        assert unsure.name == "b"
        refused = await opened.client.post("/v1/judge/model", json={"pack": "b"}, headers=opened.helper)
        assert refused.status_code == 403
        assert (await opened.client.post("/v1/judge/model", json={"pack": "../a"}, headers=operator)).status_code == 422
        assert (await opened.client.post("/v1/judge/model", json={"pack": "zzz"}, headers=operator)).status_code == 404
        swapped = await opened.client.post("/v1/judge/model", json={"pack": "b"}, headers=operator)
        assert swapped.json() == {"model_version": "done@1.1.0"}
        second = await opened.verdict((await opened.submit(jpeg(scene(42)))).json()["id"])
        assert (second.outcome, second.model_version, codes_of(second)) == ("needs_review", "done@1.1.0", ["uncertain"])
        assert second.confidence == pytest.approx(0.5)


def test_a_pack_whose_model_does_not_match_its_digest_is_refused(tmp_path):
    pack = write_pack(tmp_path / "p", brightness_model(1.0, 0.0), name="done", version="1.0.0", input_name="x", size=32)
    (pack / "model.onnx").write_bytes(brightness_model(2.0, 0.0))
    with pytest.raises(PackError, match="digest"):
        ClassifierHolder().deploy(pack)
