"""The OpenAPI 3.1 document, built from the msgspec types (``wire.py``, ``params.py``) so it
cannot drift from them.

``openapi.yaml`` at the repository top level is this module's output
(``python -m speko_bridge.openapi > openapi.yaml``, or ``make openapi``); a test fails when
the file and the types disagree. The server serves the same text at ``GET /openapi.yaml``.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec
import yaml

from . import __version__
from .codes import ApiErrorCode
from .config import DEFAULT_MINT_RATE_PER_MINUTE
from .jsondepth import MAX_JSON_DEPTH
from .params import DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS, SEMANTIC_PROVIDERS, SessionParams
from .wire import ErrorBody, Health, SessionCreated, SessionView

WEBSOCKET_PROSE = f"""\
## Realtime WebSocket: `GET /v1/realtime`

OpenAPI cannot describe a WebSocket; this is its summary. The full contract, every message,
frame, code and limit, is `docs/protocol.md` in the repository.

**Opening.** `new WebSocket(url, [token])`: the token minted by `POST /v1/sessions` is the
FIRST offered subprotocol, and the server selects it in its handshake answer. Never put it
in the URL. A token opens one socket, once, before `expiresAt`. A bad, expired, used or
revoked token still completes the handshake (browsers would otherwise see only 1006),
then receives an `error` frame, a `close` frame and close code 4001. When
`SPEKO_ALLOWED_ORIGINS` is set, any other `Origin` gets `origin_not_allowed` and 4003.

**Client to server.** Binary: PCM16 LE mono audio at `inputSampleRate`, any chunk size (an
odd trailing byte is kept for the next chunk). Text: `{{"type":"commit"}}`,
`{{"type":"interrupt"}}`, `{{"type":"tool_result","callId":"...","output":"..."}}`. Anything else
gets an `error` frame `invalid_message` (a key given twice included); the session goes
on. A message over 256 KiB (UTF-8 for text) ends the session with 4009, as does a client
that leaves its outgoing queue (256 messages or 256 KiB) full for `SPEKO_CLIENT_SEND_TIMEOUT`
(10 s). Input is read no faster than real time plus `SPEKO_AUDIO_BURST_SECONDS` (10 s) of
audio and `SPEKO_CLIENT_MESSAGES_PER_SECOND` (500) messages a second: past that the server
stops reading (TCP pushes back); nothing is dropped.

**Provider faults.** A dropped or closed provider connection, a message over 1 MiB or
32 unreadable messages in a row end the session at once with 4500; a provider silent for
`SPEKO_UPSTREAM_READ_TIMEOUT` (20 s) while it owes a reply, too. The session record keeps
the usage reached so far.

**Server to client.** Binary: assistant audio, PCM16 LE mono at `outputSampleRate`, any
chunk size (chunks already queued for a client that fell behind go out joined, up to
32 KiB; samples and order are unchanged). Text:
`transcript` (`role`, `text`, `final`), `tool_call` (`callId`, `name`, `arguments`), `usage`
(`inputAudioTokens`, `outputAudioTokens`, per response), `error` (`code`, `message`), and
`close` (`code`, `reason`) which is always the last message; the socket then closes with
the same code.

**Close codes.** 1000 normal, 1001 server going away, 1011 internal error, 4001 bad token,
4003 origin not allowed, 4004 revoked, 4008 ttl reached, 4009 protocol violation,
4029 rate limited or overloaded, 4500 provider failed, 4502 provider refused.

**OpenAI-compatible socket.** `GET /v1/openai/realtime` serves the same sessions in OpenAI's
GA Realtime protocol for existing OpenAI clients: the token as `Authorization: Bearer` or
the `openai-insecure-api-key.<token>` subprotocol next to `realtime`; `?model=` ignored;
24 kHz PCM16 in base64 events; what the provider cannot do is an `error` event
`unsupported_for_provider` (README, "Existing OpenAI Realtime code").

**Session length.** `ttlSeconds` (default {DEFAULT_TTL_SECONDS}, capped at {MAX_TTL_SECONDS})
counts from the moment the socket opens.
"""

ERROR_CODES = {
    "400": (ApiErrorCode.INVALID_JSON, "The body is not JSON."),
    "401": (ApiErrorCode.INVALID_API_KEY, "Missing or unknown API key."),
    "404": (ApiErrorCode.NOT_FOUND, "No such session for this API key (also for another key's session)."),
    "413": (ApiErrorCode.PAYLOAD_TOO_LARGE, "Body over 64 KiB."),
    "415": (ApiErrorCode.UNSUPPORTED_MEDIA_TYPE, "Content-Type is not application/json."),
    "422": (ApiErrorCode.INVALID_REQUEST, "The body breaks a rule; the message names the field as `$.field`."),
    "429": (ApiErrorCode.RATE_LIMITED, "Too many requests for this API key."),
    "503": (ApiErrorCode.STORE_UNAVAILABLE, "The session store is unreachable; no token was issued."),
}


def _error(status: str) -> dict[str, Any]:
    code, text = ERROR_CODES[status]
    return {
        "description": f"`{code}`: {text}",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }


def _json(ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


#: The one mint rule across two fields that JSON Schema can say but a msgspec type cannot:
#: ``semantic`` turn detection only for the providers that offer it (``check_params``
#: answers 422 naming ``$.turnDetection.type`` otherwise).
SEMANTIC_RULE = {
    "if": {"required": ["turnDetection"],
           # "type": "object": `turnDetection: null` (none asked for) must not match the rule
           "properties": {"turnDetection": {"type": "object", "required": ["type"],
                                            "properties": {"type": {"const": "semantic"}}}}},
    "then": {"properties": {"provider": {"enum": sorted(SEMANTIC_PROVIDERS)}}},
}


@functools.cache
def document() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        [SessionParams, SessionCreated, SessionView, ErrorBody, Health],
        ref_template="#/components/schemas/{name}",
    )
    components["SessionParams"] = {**components["SessionParams"], **SEMANTIC_RULE}
    session_id = {
        "name": "session_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "maxLength": 128},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "speko_bridge",
            "version": __version__,
            "description": (
                "Mint short-lived single-use tokens for browser apps, then bridge their "
                "WebSocket to OpenAI Realtime, Gemini Live or xAI with one protocol.\n\n"
                + WEBSOCKET_PROSE
            ),
        },
        "servers": [{"url": "http://127.0.0.1:8000"}],
        "security": [{"apiKey": []}],
        "paths": {
            "/v1/sessions": {
                "post": {
                    "operationId": "createSession",
                    "summary": "Mint a session token for one browser WebSocket",
                    "description": (
                        "Called by a backend holding an API key. `ttlSeconds` above "
                        f"{MAX_TTL_SECONDS} is capped, not refused; when absent it is "
                        f"{DEFAULT_TTL_SECONDS}. Each API key has a mint allowance "
                        f"(`SPEKO_MINT_RATE_PER_MINUTE`, {DEFAULT_MINT_RATE_PER_MINUTE} a minute "
                        "unless the server sets another, `SPEKO_MINT_BURST`; shared by every "
                        "replica with Redis); a spent allowance answers 429 `rate_limited` with "
                        "`Retry-After` in seconds. JSON nested deeper than "
                        f"{MAX_JSON_DEPTH} levels is 400 `invalid_json`. While the server is "
                        "overloaded (its event-loop lag or CPU over `SPEKO_OVERLOAD_LAG_MS` / "
                        "`SPEKO_OVERLOAD_CPU_PERCENT`) a mint answers 503 `overloaded` with "
                        "`Retry-After`: retry later, or on another replica."
                    ),
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/SessionParams"}
                            }
                        },
                    },
                    "responses": {
                        "201": _json("SessionCreated", "Minted; hand `token` and `url` to the browser."),
                        **{s: _error(s) for s in ("400", "401", "413", "415", "422", "429")},
                        "503": {
                            "description": ("`store_unavailable`: the session store is unreachable; "
                                            "or `overloaded`: the server is too busy for a new "
                                            "session. No token was issued; `Retry-After` says when "
                                            "to retry."),
                            "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1},
                                                        "description": "Seconds to wait before retrying."}},
                            "content": {"application/json": {
                                "schema": {"$ref": "#/components/schemas/ErrorBody"}}},
                        },
                    },
                }
            },
            "/v1/sessions/{session_id}": {
                "parameters": [session_id],
                "get": {
                    "operationId": "getSession",
                    "summary": "Read a session record (owner only)",
                    "responses": {
                        "200": _json("SessionView", "The record."),
                        **{s: _error(s) for s in ("401", "404", "503")},
                    },
                },
                "delete": {
                    "operationId": "revokeSession",
                    "summary": "Revoke a session: an unused token stops working, a live socket closes with 4004",
                    "description": "Idempotent: revoking an ended or revoked session returns its record unchanged.",
                    "responses": {
                        "200": _json("SessionView", "The record after revocation."),
                        **{s: _error(s) for s in ("401", "404", "503")},
                    },
                },
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness: the process is up",
                    "security": [],
                    "responses": {"200": _json("Health", "Alive.")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": ("Readiness: the store is reachable, the server is not draining "
                                "and not overloaded"),
                    "security": [],
                    "responses": {
                        "200": _json("Health", "Ready."),
                        "503": _json("Health", "Not ready: `store_unavailable`, `draining`, or "
                                               "`overloaded` (new sessions are refused for load; "
                                               "`reason` says which signal is over its limit)."),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics of this process (keep it off the public route)",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A server-side API key from SPEKO_API_KEYS. Never give it to a browser.",
                }
            },
            "schemas": components,
        },
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so the prose reads as written."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


@functools.cache
def document_yaml() -> str:
    return yaml.dump(document(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    print(document_yaml(), end="")
