"""Logging: one JSON object per line in production (``SPEKO_LOG_FORMAT=json``), readable
text in dev.

What may appear: the message, the logger, the level, and the context fields in
:data:`CONTEXT_FIELDS` passed with ``extra=``: session id, provider, API key *id* (a hash
prefix, not the key), close code. Never a token, a key or audio: no call in the package
logs one, and the libraries that would log handshake headers or frame payloads at DEBUG
(websockets, aiohttp, uvicorn's protocol tracing) are held at INFO whatever the level.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

import msgspec

CONTEXT_FIELDS = ("session_id", "provider", "key_id", "close_code", "upstream_ms", "live_sessions")
#: Libraries whose DEBUG output includes headers (the token is a subprotocol) or payloads.
QUIET_LIBRARIES = ("websockets", "aiohttp", "uvicorn.protocols", "asyncio", "hpack", "redis")

_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
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
        return f"{line} [{context}]" if context else line


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
