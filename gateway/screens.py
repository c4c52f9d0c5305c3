"""The web screens the gateway serves: an HTML shell per screen and the built static assets
(see docs/adr/0044-web-screens-stack.md). No web framework here: the routes in
gateway.api call these.

The shell holds no inline script or style, so the Content-Security-Policy can forbid both:
a screen's configuration (the map tile URL) travels in a JSON data block, which the
browser never executes."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

# The screens and the titles of their shells; a screen without a built entry is a 404.
TITLES = {
    "kiosk": "SmartGym gate",
    "console": "SmartGym branch console",
    "ops": "SmartGym operations",
    "app": "SmartGym",
}
# Only the kiosk uses the camera (and the member app, geolocation and the camera).
PERMISSIONS = {
    "kiosk": "camera=(self), geolocation=(), microphone=()",
    "app": "camera=(self), geolocation=(self), microphone=()",
}
NO_PERMISSIONS = "camera=(), geolocation=(), microphone=()"
# What makes a screen an installable app: its web-app manifest and theme colour.
INSTALLABLE = {
    "app": '<link rel="manifest" href="/app/manifest.webmanifest"><meta name="theme-color" content="#0550ae">'
    '<link rel="icon" href="/app/icon.svg" type="image/svg+xml">',
}
# Hashed asset names never change content: cache them for a year.
IMMUTABLE = "public, max-age=31536000, immutable"
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    ".webmanifest": "application/manifest+json",
}


class WebBuildMissing(Exception):
    """The built assets are not where the settings say (no manifest.json there)."""


@dataclass(frozen=True)
class Screens:
    """The built screens found in one directory (web/dist or an override)."""

    root: Path
    entries: dict[str, dict[str, str | None]]
    tile_url: str

    @classmethod
    def load(cls, root: Path, *, tile_url: str) -> Screens:
        try:
            manifest = json.loads((root / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise WebBuildMissing(f"no built screens in {root} (run scripts/build-web)") from exc
        return cls(root.resolve(), dict(manifest.get("screens", {})), tile_url)

    def shell(self, screen: str, *, lang: str = "en") -> str | None:
        """The HTML page of ``screen``, or None when it was not built."""
        entry = self.entries.get(screen)
        if entry is None or screen not in TITLES:
            return None
        config = json.dumps({"screen": screen, "tileUrl": self.tile_url})
        # A data block: "</" cannot close the script element early.
        config = config.replace("</", "<\\/")
        stylesheet = entry.get("css")
        css = f'<link rel="stylesheet" href="/static/{html.escape(stylesheet)}">' if stylesheet else ""
        js = html.escape(entry["js"] or "")
        return (
            "<!doctype html>\n"
            f'<html lang="{html.escape(lang)}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(TITLES[screen])}</title>{css}{INSTALLABLE.get(screen, '')}"
            f'<script type="module" src="/static/{js}"></script></head>'
            f'<body><script type="application/json" id="smartgym-config">{config}</script>'
            "<noscript>This screen needs JavaScript.</noscript>"
            # Painted as soon as the stylesheet is in, before the module runs.
            f'<div id="app"><p class="boot">{html.escape(TITLES[screen])}…</p></div></body></html>'
        )

    def asset(self, path: str) -> Path | None:
        """The file under the build directory that ``path`` names, never outside it."""
        if not path or "\\" in path or path.startswith("/"):
            return None
        candidate = (self.root / path).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate

    def headers(self, screen: str) -> dict[str, str]:
        """Security headers of a shell page."""
        return {
            "content-security-policy": content_security_policy(self.tile_url),
            "permissions-policy": PERMISSIONS.get(screen, NO_PERMISSIONS),
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
            "cross-origin-opener-policy": "same-origin",
            "cache-control": "no-cache",
        }


def content_security_policy(tile_url: str) -> str:
    """Everything from this origin only; map tiles from the tile server's origin too. No
    inline script or style, no eval, no frames, no plugins."""
    images = ["'self'", "data:", "blob:"]
    if tile_url:
        parts = urlsplit(tile_url.replace("{s}", "a"))
        if parts.scheme in ("http", "https") and parts.netloc:
            # Tile servers with {s} subdomains: the policy names the wildcard host.
            host = urlsplit(tile_url).netloc.replace("{s}", "*")
            images.append(f"{parts.scheme}://{host}")
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {' '.join(images)}",
            "connect-src 'self'",
            "media-src 'self' blob: mediastream:",
            "font-src 'self'",
            "manifest-src 'self'",
            "worker-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def media_type(path: Path) -> str:
    return TYPES.get(path.suffix, "application/octet-stream")
