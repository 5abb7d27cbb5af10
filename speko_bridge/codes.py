"""Every named code the bridge answers with, in one module that imports nothing.

- :class:`CloseCode`: WebSocket close codes (docs/protocol.md section 5, "Close codes").
- :class:`ErrorCode`: the ``code`` of an ``error`` frame on a socket, also the
  ``close_reason`` some session records carry (section 4, "Error codes").
- :class:`ApiErrorCode`: the ``error.code`` of a REST error body (``openapi.yaml``).

They are ``IntEnum`` / ``StrEnum`` so a member *is* its value: ``json.dumps``, msgspec,
``str()``, ``f"{code}"`` and ``==`` all see the plain number or string, and the wire does not
change when a literal becomes a member (``tests/test_codes.py`` checks that). The module
imports nothing from the package, so the provider codecs, the store, the REST layer and the
Python SDK can all use it without pulling in each other.
"""

from __future__ import annotations

import enum


class CloseCode(enum.IntEnum):
    """WebSocket close codes of docs/protocol.md section 5."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server drain
    #: Never sent: the code a client's socket reports when it ended without a close
    #: handshake (network loss). A session whose client is gone is recorded with it (v2).
    ABNORMAL = 1006
    INTERNAL_ERROR = 1011
    BAD_TOKEN = 4001
    ORIGIN_NOT_ALLOWED = 4003
    REVOKED = 4004
    TTL_REACHED = 4008
    PROTOCOL_VIOLATION = 4009
    RATE_LIMITED = 4029
    PROVIDER_FAILED = 4500
    PROVIDER_REFUSED = 4502


class ErrorCode(enum.StrEnum):
    """The ``code`` of an ``error`` frame (docs/protocol.md section 5)."""

    INVALID_TOKEN = "invalid_token"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_USED = "token_used"
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    INVALID_MESSAGE = "invalid_message"
    RATE_LIMITED = "rate_limited"
    SESSION_EXPIRED = "session_expired"
    SESSION_REVOKED = "session_revoked"
    PROVIDER_ERROR = "provider_error"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    PROVIDER_AUTH_FAILED = "provider_auth_failed"
    INTERNAL_ERROR = "internal_error"
    # v2
    #: A resume reached a replica that does not hold the session (close 4001).
    SESSION_ELSEWHERE = "session_elsewhere"
    #: Record only: the client's socket dropped and its grace window ran out (close 1006).
    CLIENT_GONE = "client_gone"
    #: The OpenAI-compatible endpoint was asked for what the session's provider cannot do.
    UNSUPPORTED_FOR_PROVIDER = "unsupported_for_provider"
    #: The server is too busy for a new session (close 4029, token not consumed).
    OVERLOADED = "overloaded"


class ApiErrorCode(enum.StrEnum):
    """The ``error.code`` of a REST error body ``{"error": {"code", "message"}}``."""

    INVALID_JSON = "invalid_json"  # 400
    INVALID_API_KEY = "invalid_api_key"  # 401
    FORBIDDEN = "forbidden"  # 403: the dev page's mint, asked by another page
    NOT_FOUND = "not_found"  # 404
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405
    PAYLOAD_TOO_LARGE = "payload_too_large"  # 413
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # 415
    INVALID_REQUEST = "invalid_request"  # 422
    RATE_LIMITED = "rate_limited"  # 429
    REQUEST_TIMEOUT = "request_timeout"  # 408: the request headers did not arrive in time
    HEADERS_TOO_LARGE = "headers_too_large"  # 431
    INTERNAL_ERROR = "internal_error"  # 500
    STORE_UNAVAILABLE = "store_unavailable"  # 503
    SERVER_BUSY = "server_busy"  # 503: the process is at its connection limit
    OVERLOADED = "overloaded"  # 503: the process is too busy for a new session (Retry-After)
    #: Any other HTTP error Starlette raises (the status says which).
    HTTP_ERROR = "http_error"
