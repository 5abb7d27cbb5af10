"""The browser SDK (always) and, in dev mode, the demo page and its same-origin mint.

- ``GET /sdk/speko-realtime.js``: the ES module browsers import (no build step).
- dev mode only: ``GET /`` serves the demo page; ``POST /dev/sessions`` mints on the page's
  behalf with the same body as ``POST /v1/sessions``. That endpoint is the pattern the
  README teaches, in miniature: the page never holds an API key, a server-side piece mints
  for it. It answers same-origin requests only (a page on another origin gets 403), and it
  does not exist outside dev mode.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from . import api
from .codes import ApiErrorCode
from .config import Settings

STATIC = Path(__file__).resolve().parent / "static"
DEV_OWNER = "dev-demo"


async def demo_page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def dev_mint(request: Request) -> Response:
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        return api.error_response(403, ApiErrorCode.FORBIDDEN, "the dev mint answers its own page only")
    settings = request.app.state.settings
    owner = settings.api_keys.identify(settings.dev_api_key) if settings.dev_api_key else None
    return await api.mint_for(request, owner or DEV_OWNER)


def routes(settings: Settings) -> list[BaseRoute]:
    out: list[BaseRoute] = [Mount("/sdk", app=StaticFiles(directory=STATIC / "sdk"), name="sdk")]
    if settings.dev:
        out += [
            Route("/", demo_page, methods=["GET"]),
            Route("/dev/sessions", dev_mint, methods=["POST"]),
            Mount("/demo", app=StaticFiles(directory=STATIC / "demo"), name="demo"),
        ]
    return out
