from __future__ import annotations

import httpx
import pytest

from facemodel.app import create_app
from facemodel.engine import FaceEngine
from facemodel.holder import ModelHolder
from facemodel.service import FaceService
from facemodel.settings import FacemodelSettings
from tests.support.apps import serving


@pytest.fixture(scope="session")
def engine(pack):
    return FaceEngine(pack)


@pytest.fixture
def faces(pack):
    service = FaceService(ModelHolder(FaceEngine(pack)), workers=2)
    yield service
    service.close()


@pytest.fixture
async def uds_client(faces, tmp_path):
    socket_path = str(tmp_path / "facemodel.sock")
    # facemodel's own settings: its body limit (camera bursts) is not the platform default.
    app = create_app(FacemodelSettings(environment="test"), faces=faces, trusted_transport=True)
    async with serving(app, uds=socket_path):
        transport = httpx.AsyncHTTPTransport(uds=socket_path)
        async with httpx.AsyncClient(transport=transport, base_url="http://facemodel", timeout=30) as client:
            yield client
