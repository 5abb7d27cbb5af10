"""REST routes: ``/v1/sessions`` (mint, read, revoke), health, and the OpenAPI document.

Every error body is ``{"error": {"code", "message"}}`` (:func:`error_response`, codes from
:class:`~speko_bridge.codes.ApiErrorCode`); no route ever answers with a stack trace (see the
exception handlers in ``app.py``). The bodies themselves are the Structs of ``wire.py``.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, datetime

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import models, openapi
from .codes import ApiErrorCode
from .jsondepth import MAX_JSON_DEPTH, too_deep
from .load import RETRY_AFTER_SECONDS
from .params import ParamsError, SessionParams, check_params, turn_detection
from .store import SessionRecord, StoreUnavailable
from .tokens import mint_token, new_id
from .wire import (
    ErrorBody,
    ErrorDetail,
    Health,
    SessionCreated,
    SessionView,
    validation_message,
)

log = logging.getLogger("speko_bridge.api")

#: Largest accepted mint body. The biggest legal body (32 KiB prompt + 16 KiB metadata +
#: tool schemas) fits; anything larger is refused before it is parsed.
MAX_BODY_BYTES = 64 * 1024


_encoder = msgspec.json.Encoder()
_params_decoder = msgspec.json.Decoder(SessionParams)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def json_response(body: msgspec.Struct, status: int = 200, headers: dict | None = None) -> Response:
    return Response(_encoder.encode(body), status, headers, media_type="application/json")


def error_response(status: int, code: ApiErrorCode, message: str, headers: dict | None = None) -> Response:
    return json_response(ErrorBody(ErrorDetail(code, message)), status, headers)


def view(record: SessionRecord) -> SessionView:
    return SessionView(
        session_id=record.session_id,
        provider=record.provider,
        model=record.model,
        status=record.status,
        created_at=iso(record.created_at),
        expires_at=iso(record.token_expires_at),
        ttl_seconds=record.ttl_seconds,
        started_at=iso(record.started_at),
        ended_at=iso(record.ended_at),
        close_code=record.close_code,
        close_reason=record.close_reason,
        usage=record.usage,
        metadata=record.params.metadata,
    )


def authenticate(request: Request) -> str | Response:
    """The API key id of the caller, or a 401 response."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return error_response(
            401, ApiErrorCode.INVALID_API_KEY, "missing Authorization: Bearer <api key>",
            {"WWW-Authenticate": "Bearer"},
        )
    key_id = request.app.state.settings.api_keys.identify(key.strip())
    if key_id is None:
        return error_response(401, ApiErrorCode.INVALID_API_KEY, "API key not recognised", {"WWW-Authenticate": "Bearer"})
    return key_id


async def read_json_body(request: Request) -> bytes | Response:
    ctype = request.headers.get("content-type", "")
    if ctype.split(";", 1)[0].strip().lower() != "application/json":
        return error_response(415, ApiErrorCode.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return error_response(413, ApiErrorCode.PAYLOAD_TOO_LARGE, f"body must be at most {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return error_response(413, ApiErrorCode.PAYLOAD_TOO_LARGE, f"body must be at most {MAX_BODY_BYTES} bytes")
    return bytes(body)


#: Top-level integer fields; JSON Schema counts ``600.0`` as an integer, so do we.
_INTEGER_FIELDS = ("ttlSeconds", "inputSampleRate", "outputSampleRate")
#: The same inside ``turnDetection`` (protocol v2).
_TURN_INTEGER_FIELDS = ("silenceMs", "prefixMs")


def integral_floats_as_ints(obj: object) -> bool:
    """Integral floats (``600.0``, which Python's ``json.dumps`` writes) in the top-level
    integer fields become ints, in place. True if anything changed."""
    changed = False
    if isinstance(obj, dict):
        for key in _INTEGER_FIELDS:
            value = obj.get(key)
            if isinstance(value, float) and value.is_integer():
                obj[key] = int(value)
                changed = True
        turn = obj.get("turnDetection")
        if isinstance(turn, dict):
            for key in _TURN_INTEGER_FIELDS:
                value = turn.get(key)
                if isinstance(value, float) and value.is_integer():
                    turn[key] = int(value)
                    changed = True
    return changed


def _second_chance(body: bytes) -> SessionParams | None:
    """A body the strict decoder refused, with integral floats as ints; None if that
    changes nothing."""
    obj = msgspec.json.decode(body)
    return msgspec.convert(obj, SessionParams) if integral_floats_as_ints(obj) else None


def decode_params(body: bytes) -> SessionParams | Response:
    if too_deep(body):
        return error_response(400, ApiErrorCode.INVALID_JSON, f"body is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        params = _params_decoder.decode(body)
    except msgspec.ValidationError as first:
        error: msgspec.ValidationError = first
        try:
            params = _second_chance(body)
        except msgspec.ValidationError as second:  # names the field still wrong
            error, params = second, None
        except msgspec.DecodeError as exc:  # not JSON after all (the typed decoder stopped first)
            return error_response(400, ApiErrorCode.INVALID_JSON, f"body is not valid JSON: {exc}")
        if params is None:
            return error_response(422, ApiErrorCode.INVALID_REQUEST, validation_message(error))
    except msgspec.DecodeError as exc:
        return error_response(400, ApiErrorCode.INVALID_JSON, f"body is not valid JSON: {exc}")
    except RecursionError:  # too_deep() is the bound; this only keeps a traceback out
        return error_response(400, ApiErrorCode.INVALID_JSON, f"body is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return check_params(params)
    except ParamsError as exc:
        return error_response(422, ApiErrorCode.INVALID_REQUEST, str(exc))


async def create_session(request: Request) -> Response:
    owner = authenticate(request)
    if isinstance(owner, Response):
        return owner
    return await mint_for(request, owner)


def store_unavailable() -> Response:
    return error_response(503, ApiErrorCode.STORE_UNAVAILABLE, "session store unavailable; retry later",
                          {"Retry-After": "1"})


async def mint_allowed(request: Request, owner: str) -> Response | None:
    """None if ``owner`` may mint now, else the 429 (or 503) answer. The allowance is per
    API key and shared by every replica when the store is Redis."""
    settings = request.app.state.settings
    if not settings.mint_rate_per_minute:
        return None
    try:
        wait = await request.app.state.store.take_mint(
            owner, settings.mint_rate_per_minute, settings.mint_burst, time.time()
        )
    except StoreUnavailable as exc:
        log.warning("mint refused, store unavailable: %s", exc)
        request.app.state.metrics.mints_refused.labels(ApiErrorCode.STORE_UNAVAILABLE).inc()
        return store_unavailable()
    if wait <= 0:
        return None
    request.app.state.metrics.mints_refused.labels(ApiErrorCode.RATE_LIMITED).inc()
    return error_response(
        429, ApiErrorCode.RATE_LIMITED,
        f"mint rate limit of {settings.mint_rate_per_minute} per minute reached for this API key",
        {"Retry-After": str(max(1, math.ceil(wait)))},
    )


def admit_mint(request: Request, session_id: str) -> Response | None:
    """The 503 of a mint while this process is too busy for a new session (load.py); else
    None, and the session counts as arriving. Asked before the mint allowance, so a
    refusal does not spend it, and before any await, so a burst of mints is counted as it
    comes."""
    state = request.app.state
    now = time.monotonic()
    if state.load.refusing(now) is None:
        state.load.arrived(session_id, now)
        return None
    state.metrics.mints_refused.labels(ApiErrorCode.OVERLOADED).inc()
    state.metrics.overload_refusals.labels("mint").inc()
    return error_response(503, ApiErrorCode.OVERLOADED,
                          "this server is too busy for a new session; retry later or elsewhere",
                          {"Retry-After": str(RETRY_AFTER_SECONDS)})


async def mint_for(request: Request, owner: str) -> Response:
    """Mint a session owned by the API key id ``owner`` from the request's JSON body."""
    session_id = new_id("sess")
    busy = admit_mint(request, session_id)
    if busy is not None:
        return busy
    minted = await _mint(request, owner, session_id)
    if minted.status_code != 201:
        request.app.state.load.left(session_id)  # refused after all: not arriving
    return minted


async def _mint(request: Request, owner: str, session_id: str) -> Response:
    limited = await mint_allowed(request, owner)
    if limited is not None:
        return limited
    body = await read_json_body(request)
    if isinstance(body, Response):
        return body
    params = decode_params(body)
    if isinstance(params, Response):
        return params

    settings = request.app.state.settings
    endpoint = request.app.state.endpoints.get(params.provider)
    if params.provider not in request.app.state.providers or endpoint is None or not endpoint.api_key:
        return error_response(
            422, ApiErrorCode.INVALID_REQUEST,
            f"provider {params.provider!r} is not configured on this server - at `$.provider`",
        )
    catalogue = settings.models.get(params.provider, ())
    if not models.allowed(catalogue, params.provider, params.model):
        return error_response(
            422, ApiErrorCode.INVALID_REQUEST,
            f"model {params.model!r} is not a known {params.provider} model (known: {', '.join(catalogue)}; "
            f"the operator can allow it with {models.env_var(params.provider)}) - at `$.model`",
        )
    now = int(time.time())
    minted = mint_token(
        settings.signing,
        session_id=session_id,
        issuer=settings.issuer,
        audience=settings.audience,
        now=now,
        window=settings.token_window_seconds,
    )
    record = SessionRecord(
        session_id=session_id,
        owner=owner,
        provider=params.provider,
        model=params.model,
        status="pending",
        params=params,
        jti=minted.jti,
        created_at=float(now),
        token_expires_at=float(minted.expires_at),
        ttl_seconds=params.ttl_seconds,
    )
    try:
        await request.app.state.store.create(record)
    except StoreUnavailable as exc:
        log.warning("mint refused, store unavailable: %s", exc)
        request.app.state.metrics.mints_refused.labels(ApiErrorCode.STORE_UNAVAILABLE).inc()
        return store_unavailable()
    request.app.state.metrics.sessions_minted.labels(params.provider).inc()
    log.info("session minted", extra={"session_id": session_id, "provider": params.provider, "key_id": owner})
    created = SessionCreated(
        session_id=session_id,
        token=minted.token,
        expires_at=iso(minted.expires_at),
        # the session id rides along (not secret) so that a load balancer can route every
        # socket of the session, resumes included, to the replica that holds it
        url=f"{settings.realtime_url}?session={session_id}",
        ttl_seconds=params.ttl_seconds,
        provider=params.provider,
        model=params.model,
        input_sample_rate=params.input_sample_rate,
        output_sample_rate=params.output_sample_rate,
        turn_detection=turn_detection(params),
    )
    return json_response(created, 201, {"Cache-Control": "no-store"})


async def get_session(request: Request) -> Response:
    owner = authenticate(request)
    if isinstance(owner, Response):
        return owner
    try:
        record = await request.app.state.store.get(request.path_params["session_id"], owner)
    except StoreUnavailable:
        return store_unavailable()
    if record is None:
        return error_response(404, ApiErrorCode.NOT_FOUND, "no such session")
    return json_response(view(record))


async def revoke_session(request: Request) -> Response:
    owner = authenticate(request)
    if isinstance(owner, Response):
        return owner
    session_id = request.path_params["session_id"]
    try:
        record = await request.app.state.store.revoke(session_id, owner, time.time())
    except StoreUnavailable:
        return store_unavailable()
    if record is None:
        return error_response(404, ApiErrorCode.NOT_FOUND, "no such session")
    if record.status == "revoked":
        request.app.state.registry.revoke(session_id)
    return json_response(view(record))


async def session_resource(request: Request) -> Response:
    """One route for the resource, so a 405 lists every method it allows."""
    if request.method == "DELETE":
        return await revoke_session(request)
    return await get_session(request)


async def healthz(request: Request) -> Response:
    return json_response(Health("ok"))


async def readyz(request: Request) -> Response:
    if request.app.state.draining:
        return json_response(Health("draining"), 503)
    reason = request.app.state.load.refusing(time.monotonic())
    if reason is not None:
        return json_response(Health(ApiErrorCode.OVERLOADED, reason), 503)
    try:
        await request.app.state.store.ping()
    except StoreUnavailable:
        return json_response(Health(ApiErrorCode.STORE_UNAVAILABLE), 503)
    return json_response(Health("ok"))


async def openapi_yaml(request: Request) -> Response:
    return Response(openapi.document_yaml(), media_type="application/yaml")


routes = [
    Route("/v1/sessions", create_session, methods=["POST"]),
    Route("/v1/sessions/{session_id}", session_resource, methods=["GET", "DELETE"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/openapi.yaml", openapi_yaml, methods=["GET"]),
]
