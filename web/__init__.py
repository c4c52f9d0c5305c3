"""SmartGym's screens (gate kiosk, branch-owner console, operations dashboard) as built
static assets: ``web/build.mjs`` bundles ``web/src`` into ``dist/``, which is committed and
shipped as package data, so that running the platform needs no node or npm. The gateway
serves them (see docs/adr/0044-web-screens-stack.md)."""

from __future__ import annotations

from pathlib import Path

DIST = Path(__file__).resolve().parent / "dist"
