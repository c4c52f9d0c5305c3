"""The gateway serves the built screens: a shell per screen with a strict CSP, hashed
assets, nothing outside the build directory, and no screens at all when turned off."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.app import create_app
from gateway.screens import content_security_policy
from gateway.settings import GatewaySettings
from tests.support.apps import asgi_client


def settings(**extra: Any) -> GatewaySettings:
    return GatewaySettings(environment="test", **extra)


async def test_the_console_shell_names_its_assets_and_forbids_inline_code():
    async with asgi_client(create_app(settings())) as gateway:
        page = await gateway.get("/console")
        assert page.status_code == 200
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "'unsafe-inline'" not in policy
        assert "'unsafe-eval'" not in policy
        assert "frame-ancestors 'none'" in policy
        assert page.headers["permissions-policy"].startswith("camera=()")
        script = page.text.split('<script type="module" src="')[1].split('"')[0]
        asset = await gateway.get(script)
        assert asset.status_code == 200
        assert asset.headers["content-type"].startswith("text/javascript")
        assert "immutable" in asset.headers["cache-control"]
        config = page.text.split('id="smartgym-config">')[1].split("</script>")[0]
        assert json.loads(config) == {"screen": "console", "tileUrl": ""}


@pytest.mark.parametrize(
    "path", ["/static/..%2fmanifest.json", "/static/%2e%2e/__init__.py", "/static/assets/", "/static/nope.js"]
)
async def test_nothing_outside_the_build_is_served(path):
    async with asgi_client(create_app(settings())) as gateway:
        assert (await gateway.get(path)).status_code in (404, 422)


async def test_unknown_screens_and_disabled_screens_are_404():
    async with asgi_client(create_app(settings())) as gateway:
        assert (await gateway.get("/nope")).status_code == 404
        assert (await gateway.get("/healthz")).status_code == 200
    async with asgi_client(create_app(settings(gateway_web_enabled=False))) as gateway:
        assert (await gateway.get("/console")).status_code == 404


def test_the_tile_server_is_the_only_other_image_origin():
    policy = content_security_policy("https://{s}.tiles.example/{z}/{x}/{y}.png")
    assert "img-src 'self' data: blob: https://*.tiles.example;" in policy
    with pytest.raises(ValueError, match="tile URL"):
        settings(gateway_map_tile_url="javascript:alert(1)")


async def test_the_member_app_is_installable_its_worker_scoped_to_the_app():
    async with asgi_client(create_app(settings())) as gateway:
        page = await gateway.get("/app")
        assert '<link rel="manifest" href="/app/manifest.webmanifest">' in page.text
        assert "geolocation=(self)" in page.headers["permissions-policy"]
        worker = await gateway.get("/app/sw.js")
        assert worker.status_code == 200
        assert worker.headers["service-worker-allowed"] == "/app"
        assert worker.headers["content-type"].startswith("text/javascript")
        manifest = (await gateway.get("/app/manifest.webmanifest")).json()
        assert (manifest["start_url"], manifest["scope"], manifest["display"]) == ("/app", "/app", "standalone")
        assert (await gateway.get(manifest["icons"][0]["src"])).status_code == 200
        assert (await gateway.get("/app/../manifest.json")).status_code == 404
        assert (await gateway.get("/app/main.js")).status_code == 404
