"""``create_app(settings)``: the Starlette app from explicit parts, no globals.

The lifespan opens the store (SQLite by default, Redis with ``SPEKO_REDIS_URL``), one shared
aiohttp ``ClientSession`` for every upstream socket, the built-in provider simulators when
``settings.simulate`` (dev mode) and a provider has no key, and four background tasks: a
sweeper that marks unused tokens' sessions ``expired`` and deletes records past
``SPEKO_RECORD_RETENTION_SECONDS`` (SQLite; Redis keys expire by themselves), the
revocation listener (another replica revoked a session this one holds), the lease keeper
(renews this replica's claims on the per-key session limit, and catches revokes the
listener missed) and the load monitor (event-loop lag and CPU, which refuse new sessions
while over their limits: ``load.py``).

:func:`drain` is the graceful stop (SIGTERM, see ``cli.py``): readiness 503, new sockets
refused, live sessions given ``settings.drain_seconds`` to end, then closed with 1001.
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
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from . import api, devpage
from .audio import configure_soxr
from .codes import ApiErrorCode, CloseCode
from .config import ProviderEndpoint, Settings
from .load import LoadGauge, LoadMonitor
from .metrics import Metrics
from .providers import PROVIDERS
from .session import SessionRegistry, openai_realtime_endpoint, realtime_endpoint
from .session.asgi import ServerHandles
from .store import SessionStore, SQLiteStore, StoreUnavailable
from .store.base import SLOT_RENEW_SECONDS

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


#: After the drain window, how long the 1001 closes and record writes may take.
DRAIN_CLOSE_TIMEOUT_SECONDS = 5.0


async def _sweep(store: SessionStore) -> None:
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_SECONDS)
        try:
            await store.expire_stale(time.time())
            await store.delete_old(time.time())
        except StoreUnavailable as exc:
            log.warning("expiry sweep skipped: %s", exc)


async def _keep_leases(store: SessionStore, registry: SessionRegistry) -> None:
    while True:
        await asyncio.sleep(SLOT_RENEW_SECONDS)
        sessions = registry.sessions()
        try:
            await store.renew_slots([(s.slot.owner, s.slot.member) for s in sessions if s.slot], time.time())
            for session_id in await store.revoked_among([s.session_id for s in sessions]):
                registry.revoke(session_id)
        except StoreUnavailable as exc:
            log.warning("session leases not renewed: %s", exc)


def make_store(settings: Settings) -> SessionStore:
    if settings.redis_url:
        from .store.redis import RedisStore

        return RedisStore(settings.redis_url, prefix=settings.redis_prefix,
                          retention_seconds=settings.record_retention_seconds)
    return SQLiteStore(settings.db_path, busy_timeout_ms=settings.db_busy_timeout_ms,
                       retention_seconds=settings.record_retention_seconds)


async def drain(app: Starlette) -> None:
    """Stop taking work and let live sessions finish: readiness 503 and new sockets refused
    at once; sessions still live after ``drain_seconds`` get a ``close`` frame with 1001;
    returns when every session has ended and its record is written (or the close timeout
    passed). Idempotent."""
    state = app.state
    if state.draining:
        return
    state.draining = True
    state.metrics.draining.set(1)
    registry: SessionRegistry = state.registry
    started = time.monotonic()
    log.info("draining", extra={"live_sessions": len(registry)})
    if not await registry.wait_empty(state.settings.drain_seconds):
        log.info("drain window over, closing with 1001", extra={"live_sessions": len(registry)})
        registry.close_all(CloseCode.GOING_AWAY, None, "server shutting down")
        await registry.wait_empty(DRAIN_CLOSE_TIMEOUT_SECONDS)
    log.info("drained in %.1f s", time.monotonic() - started, extra={"live_sessions": len(registry)})


def create_app(settings: Settings, *, store: SessionStore | None = None) -> Starlette:
    configure_soxr()  # before the first session's resamplers (speko_bridge/audio.py)
    store = store or make_store(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            await store.open()
            stack.push_async_callback(store.close)
            http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=HTTP_CONNECTOR_LIMIT))
            stack.push_async_callback(http.close)
            app.state.http = http
            app.state.endpoints = await _start_simulators(settings, stack)
            registry = app.state.registry
            background = [
                asyncio.create_task(_sweep(store)),
                asyncio.create_task(_keep_leases(store, registry)),
                asyncio.create_task(store.watch_revocations(registry.revoke)),
                asyncio.create_task(LoadMonitor(app.state.load, app.state.metrics, registry.__len__).run()),
            ]
            try:
                yield
            finally:
                app.state.draining = True
                registry.close_all(CloseCode.GOING_AWAY, None, "server shutting down")
                await registry.wait_empty(timeout=DRAIN_CLOSE_TIMEOUT_SECONDS)
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        code = {404: ApiErrorCode.NOT_FOUND, 405: ApiErrorCode.METHOD_NOT_ALLOWED}.get(
            exc.status_code, ApiErrorCode.HTTP_ERROR
        )
        return api.error_response(exc.status_code, code, str(exc.detail), exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return api.error_response(500, ApiErrorCode.INTERNAL_ERROR, "internal error")

    metrics = Metrics()
    app = Starlette(
        routes=[
            *api.routes,
            WebSocketRoute("/v1/realtime", realtime_endpoint),
            WebSocketRoute("/v1/openai/realtime", openai_realtime_endpoint),
            Route("/metrics", metrics.endpoint, methods=["GET"]),
            *devpage.routes(settings),
        ],
        lifespan=lifespan,
        middleware=[Middleware(ServerHandles)],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.state.settings = settings
    app.state.store = store
    app.state.registry = SessionRegistry()
    app.state.draining = False
    app.state.metrics = metrics
    app.state.load = LoadGauge(settings.overload_lag_ms / 1000, settings.overload_cpu_percent / 100)
    app.state.providers = PROVIDERS
    return app
