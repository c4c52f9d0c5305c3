from __future__ import annotations

import pytest

from auth.app import create_app
from common.migrations import upgrade
from common.settings import PlatformSettings
from tests.support.apps import FAST_HASHER, asgi_client


@pytest.fixture
def settings(tmp_path):
    settings = PlatformSettings(environment="test", data_dir=tmp_path)
    upgrade("auth", settings.database_url("auth"))
    return settings


@pytest.fixture
async def app_and_client(settings):
    app = create_app(settings, hasher=FAST_HASHER)
    async with asgi_client(app) as client:
        yield app, client


@pytest.fixture
def client(app_and_client):
    return app_and_client[1]
