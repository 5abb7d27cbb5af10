"""Logging: one JSON object per line in production (``SPEKO_LOG_FORMAT=json``), readable
text in dev.

What may appear: the message, the logger, the level, and the context fields in
:data:`CONTEXT_FIELDS` passed with ``extra=``: session id, provider, API key *id* (a hash
prefix, not the key), close code. Never a token, a key or audio: no call in the package
logs one, and the libraries that would log handshake headers or frame payloads at DEBUG
(websockets, aiohttp, uvicorn's protocol tracing) are held at INFO whatever the level.

What a client puts in a URL is out of our hands, though: a token pasted into a query string
(``/v1/realtime?token=eyJ...``) would reach uvicorn's access log while still valid. Every
line is therefore passed through :func:`scrub` before it is written: query-string values,
anything shaped like a JWT and ``Bearer`` credentials become ``[redacted]``.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import TextIO

import msgspec

CONTEXT_FIELDS = ("session_id", "provider", "key_id", "close_code", "upstream_ms", "live_sessions")
#: Libraries whose DEBUG output includes headers (the token is a subprotocol) or payloads.
QUIET_LIBRARIES = ("websockets", "aiohttp", "uvicorn.protocols", "asyncio", "hpack", "redis")

_encoder = msgspec.json.Encoder()

REDACTED = "[redacted]"
# three base64url segments, the first a JSON object's start ("eyJ" is '{"'): a JWT/JWS
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*")
# the value of every query parameter (the name stays, to show what was sent)
_QUERY_VALUE = re.compile(r"([?&][^=&\s\"'#?]*=)[^&\s\"'#]+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',]+")


def scrub(text: str) -> str:
    """``text`` with query-string values, JWT-shaped strings and bearer credentials
    replaced by ``[redacted]``."""
    if "=" not in text and "eyJ" not in text and "earer" not in text:
        return text  # the common line: nothing to look at
    text = _JWT.sub(REDACTED, text)
    text = _QUERY_VALUE.sub(lambda m: m.group(1) + REDACTED, text)
    return _BEARER.sub(lambda m: m.group(1) + REDACTED, text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        return _encoder.encode(entry).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(
            f"{name}={record.__dict__[name]}" for name in CONTEXT_FIELDS
            if record.__dict__.get(name) is not None
        )
        return scrub(f"{line} [{context}]" if context else line)


def configure(fmt: str, level: str, stream: TextIO | None = None) -> None:
    """Route every logger (uvicorn's included) through one handler on ``stream`` (stderr)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
