"""A minimal upstream for gateway benchmarks: `python bench/_upstream.py PORT`.

``/ping?id=…`` answers ``{"ok": true}`` and counts the request (and its id);
``/stats`` tells how many requests and distinct ids arrived, so a benchmark can check
that every request reached the upstream exactly once."""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from common.loops import configured_choice, resolved_name
from smartgym.serving import server_config

seen: set[str] = set()
counts = {"requests": 0}


async def ping(request: Request) -> JSONResponse:
    counts["requests"] += 1
    ident = request.query_params.get("id")
    if ident is not None:
        seen.add(ident)
    return JSONResponse({"ok": True})


async def stats(_request: Request) -> JSONResponse:
    return JSONResponse({"requests": counts["requests"], "distinct": len(seen)})


async def reset(_request: Request) -> JSONResponse:
    seen.clear()
    counts["requests"] = 0
    return JSONResponse({"ok": True})


if __name__ == "__main__":
    app = Starlette(routes=[Route("/ping", ping), Route("/stats", stats), Route("/reset", reset, methods=["POST"])])
    # Served as a service is, on the services' loop.
    server = uvicorn.Server(
        server_config(app, host="127.0.0.1", port=int(sys.argv[1]), loop=resolved_name(configured_choice()))
    )
    server.run()
    if not server.started:
        sys.exit(3)  # as uvicorn.run does: it never served
