"""The browser SDK (always) and, in dev mode, the demo page and its same-origin mint.

- ``GET /sdk/speko-realtime.js``: the ES module browsers import (no build step).
- dev mode only: ``GET /`` serves the demo page; ``POST /dev/sessions`` mints on the page's
  behalf with the same body as ``POST /v1/sessions``. That endpoint is the pattern the
  README teaches, in miniature: the page never holds an API key, a server-side piece mints
  for it. It does not exist outside dev mode.

The dev mint has no credential, so who may reach it is the whole defence (see
:func:`loopback_same_origin`): the ``Host`` must be a loopback name with this server's port
and the ``Origin`` must be that same ``http://`` origin. That refuses a page on another
origin (browsers send ``Origin`` on every POST) and DNS rebinding, where ``evil.example``
is made to resolve to 127.0.0.1: the browser then sends ``Host: evil.example:8000`` with a
matching ``Origin``, which names no loopback host. A request without ``Origin`` is not a
browser page of ours (curl, scripts) and is refused too: they have ``/v1/sessions``.
"""

from __future__ import annotations

from pathlib import Path

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


#: Host names the demo page may be served under; anything else may be a rebinding attack.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def loopback_same_origin(request: Request) -> bool:
    """True when ``Host`` is a loopback name with the port this server listens on and
    ``Origin`` is exactly ``http://`` + that host."""
    host = request.headers.get("host", "").lower()
    origin = request.headers.get("origin", "").lower()
    server = request.scope.get("server")
    if not server or server[1] is None:
        return False
    port = server[1]
    allowed = {f"{name}:{port}" for name in LOOPBACK_HOSTS}
    if port == 80:
        allowed |= set(LOOPBACK_HOSTS)  # browsers leave the default port out
    return host in allowed and origin == f"http://{host}"


async def dev_mint(request: Request) -> Response:
    if not loopback_same_origin(request):
        return api.error_response(
            403, ApiErrorCode.FORBIDDEN,
            "the dev mint answers its own page on a loopback address only (Host and Origin)",
        )
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
