from __future__ import annotations

import pytest

from facemodel.engine import FaceEngine


@pytest.fixture(scope="session")
def engine(pack):
    return FaceEngine(pack)
