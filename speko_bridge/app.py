"""``create_app(settings)``: the Starlette app from explicit parts, no globals.

The lifespan opens the store, one shared aiohttp ``ClientSession`` for every upstream
socket, the built-in provider simulators when ``settings.simulate`` (dev mode) and a
provider has no key, and a sweeper that marks unused tokens' sessions ``expired``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import WebSocketRoute

from . import api, devpage
from .bridge import SessionRegistry, realtime_endpoint
from .config import ProviderEndpoint, Settings
from .providers import PROVIDERS
from .store import SessionStore, SQLiteStore, StoreUnavailable

log = logging.getLogger("speko_bridge")

#: How often pending sessions whose token window passed are marked expired.
SWEEP_INTERVAL_SECONDS = 30.0
#: Upstream connections per host are not limited (each session is one long socket).
HTTP_CONNECTOR_LIMIT = 0

SIMULATOR_KEY = "sk-sim"


async def _start_simulators(settings: Settings, stack: contextlib.AsyncExitStack) -> dict[str, ProviderEndpoint]:
    endpoints = dict(settings.providers)
    if not settings.simulate:
        return endpoints
    from .simulator.google import GoogleSimConfig, GoogleSimulator
    from .simulator.openai import OpenAISimConfig, OpenAISimulator
    from .simulator.xai import XAISimConfig, XAISimulator

    # validate=False: checking our own messages against the providers' SDK types is the
    # tests' job, and a server installed without the test extra has no such SDKs.
    simulators = {
        "openai": lambda: OpenAISimulator(OpenAISimConfig(api_key=SIMULATOR_KEY, validate=False)),
        "google": lambda: GoogleSimulator(GoogleSimConfig(api_key=SIMULATOR_KEY, validate=False)),
        "xai": lambda: XAISimulator(XAISimConfig(api_key=SIMULATOR_KEY, validate=False)),
    }
    for name, make in simulators.items():
        if endpoints[name].api_key:
            continue
        sim = make()
        await sim.start("127.0.0.1", 0)
        stack.push_async_callback(sim.stop)
        endpoints[name] = ProviderEndpoint(url=sim.url, api_key=SIMULATOR_KEY)
        log.warning("no %s key: %s sessions go to the built-in simulator at %s", name, name, sim.url)
    return endpoints


async def _sweep(store: SessionStore) -> None:
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_SECONDS)
        try:
            await store.expire_stale(time.time())
        except StoreUnavailable as exc:
            log.warning("expiry sweep skipped: %s", exc)


def create_app(settings: Settings, *, store: SessionStore | None = None) -> Starlette:
    store = store or SQLiteStore(settings.db_path, busy_timeout_ms=settings.db_busy_timeout_ms)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            await store.open()
            stack.push_async_callback(store.close)
            http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=HTTP_CONNECTOR_LIMIT))
            stack.push_async_callback(http.close)
            app.state.http = http
            app.state.endpoints = await _start_simulators(settings, stack)
            sweeper = asyncio.create_task(_sweep(store))
            try:
                yield
            finally:
                sweeper.cancel()
                app.state.draining = True
                app.state.registry.close_all(1001, None, "server shutting down")
                await app.state.registry.wait_empty(timeout=5.0)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return api.error_response(exc.status_code, code, str(exc.detail), exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return api.error_response(500, "internal_error", "internal error")

    app = Starlette(
        routes=[*api.routes, WebSocketRoute("/v1/realtime", realtime_endpoint), *devpage.routes(settings)],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.state.settings = settings
    app.state.store = store
    app.state.registry = SessionRegistry()
    app.state.draining = False
    app.state.providers = PROVIDERS
    return app
