"""Where a session stands, and how it ended."""

from __future__ import annotations

import enum

import msgspec


class Phase(enum.Enum):
    CONNECTING = "connecting"  # the provider socket is opening; client messages are held
    READY = "ready"  # both sides open; messages flow
    RECONNECTING = "reconnecting"  # the provider asked us to move (goAway); messages are held
    #: The client's socket dropped without a close handshake: the provider connection and the
    #: conversation are kept for the grace window (``SPEKO_RESUME_SECONDS``), nothing is
    #: queued for the absent client, and a socket with the same token may take the session back.
    CLIENT_AWAY = "client_away"
    ENDING = "ending"  # the outcome is decided; tasks stop, finals are sent, the record written


class Outcome(msgspec.Struct, frozen=True):
    """How a session ends: the close code, the error code sent before it (if any), why."""

    code: int
    error_code: str | None
    message: str
