"""The browser SDK (always) and, in dev mode, the demo page and its same-origin mint.

- ``GET /sdk/<file>``: the ES module browsers import (``speko-realtime.js``), its
  capture worklet and its TypeScript declarations; no build step. Pages on other origins
  import it, so it carries CORS (``Access-Control-Allow-Origin`` per
  ``SPEKO_ALLOWED_ORIGINS``, ``*`` when unset), in every mode. Only the files listed in
  :data:`SDK_FILES` exist; nothing under ``/sdk`` redirects (a redirect would be built from
  the request's Host header).
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
from urllib.parse import urlsplit

import msgspec
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from . import api
from .codes import ApiErrorCode
from .config import Settings

STATIC = Path(__file__).resolve().parent / "static"
DEV_OWNER = "dev-demo"

JS = "text/javascript; charset=utf-8"
#: What the SDK route serves, and as what. A fixed table: no path from the URL reaches the disk.
SDK_FILES = {
    "speko-realtime.js": JS,
    "speko-capture-worklet.js": JS,
    "speko-realtime.d.ts": "application/typescript; charset=utf-8",
}
DEMO_FILES = {"demo.js": JS, "demo.css": "text/css; charset=utf-8"}

#: The SDK has no version in its URL, so browsers may keep it 5 minutes, then revalidate
#: (ETag): a deploy reaches every page within that, and reloads cost a 304.
SDK_CACHE = "public, max-age=300, must-revalidate"
#: The demo changes with the server it comes from; never cached.
DEMO_CACHE = "no-cache"

#: On every static answer: the browser must not guess a script out of something else.
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff"}


def demo_csp(settings: Settings) -> str:
    """The demo page's Content-Security-Policy: its own scripts and styles only, sockets to
    this server and to the URL it mints (``SPEKO_PUBLIC_URL`` may name another host), no
    framing (clickjacking the talk button), no plugins, no forms, no base rewriting."""
    public = urlsplit(settings.public_url)
    sockets = f"{public.scheme}://{public.netloc}"
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self' {sockets}; media-src 'self' blob:; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def cors_headers(request: Request) -> dict[str, str]:
    """``*`` when any origin may connect; else the request's origin if it is allowed, and
    ``Vary: Origin`` so a shared cache keeps one answer per origin."""
    allowed = request.app.state.settings.allowed_origins
    if allowed is None:
        return {"Access-Control-Allow-Origin": "*"}
    origin = request.headers.get("origin")
    headers = {"Vary": "Origin"}
    if origin in allowed:
        headers["Access-Control-Allow-Origin"] = origin
    return headers


def _file(request: Request, directory: Path, table: dict[str, str], cache: str) -> Response:
    name = request.path_params.get("name", "")
    media_type = table.get(name)
    if media_type is None:
        return api.error_response(404, ApiErrorCode.NOT_FOUND, "no such file", COMMON_HEADERS)
    headers = {**COMMON_HEADERS, "Cache-Control": cache, **cors_headers(request)}
    response = FileResponse(directory / name, media_type=media_type, headers=headers,
                            stat_result=(directory / name).stat())
    etag = response.headers["etag"]
    if etag in (tag.strip() for tag in request.headers.get("if-none-match", "").split(",")):
        return Response(status_code=304, headers={**headers, "ETag": etag})  # revalidated: no body
    return response


async def sdk_file(request: Request) -> Response:
    if request.method == "OPTIONS":  # a preflight (a fetch() with custom headers): GET only
        headers = {**COMMON_HEADERS, **cors_headers(request), "Access-Control-Allow-Methods": "GET",
                   "Access-Control-Max-Age": "600"}
        return Response(status_code=204, headers=headers)
    return _file(request, STATIC / "sdk", SDK_FILES, SDK_CACHE)


async def no_listing(request: Request) -> Response:
    return api.error_response(404, ApiErrorCode.NOT_FOUND, "no such file", COMMON_HEADERS)


async def demo_file(request: Request) -> Response:
    return _file(request, STATIC / "demo", DEMO_FILES, DEMO_CACHE)


async def demo_page(request: Request) -> Response:
    headers = {**COMMON_HEADERS, "Cache-Control": DEMO_CACHE, "X-Frame-Options": "DENY",
               "Content-Security-Policy": demo_csp(request.app.state.settings),
               "Referrer-Policy": "no-referrer"}
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=headers)


async def dev_providers(request: Request) -> Response:
    """Which providers the built-in simulators answer for (no key configured), for the page."""
    settings = request.app.state.settings
    simulated = {name: bool(settings.simulate and not endpoint.api_key)
                 for name, endpoint in settings.providers.items()}
    return Response(msgspec.json.encode({"simulated": simulated}), media_type="application/json",
                    headers={**COMMON_HEADERS, "Cache-Control": "no-store"})


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
    # "{name:path}" takes every path under /sdk/, trailing slashes included, so the router
    # never answers one with its Host-built redirect; "/sdk" itself is taken for the same reason.
    out: list[BaseRoute] = [
        Route("/sdk", no_listing, methods=["GET"]),
        Route("/sdk/{name:path}", sdk_file, methods=["GET", "OPTIONS"]),
    ]
    if settings.dev:
        out += [
            Route("/", demo_page, methods=["GET"]),
            Route("/dev/sessions", dev_mint, methods=["POST"]),
            Route("/dev/providers", dev_providers, methods=["GET"]),
            Route("/demo", no_listing, methods=["GET"]),
            Route("/demo/{name:path}", demo_file, methods=["GET"]),
        ]
    return out
