"""Who may start a session: origin, drain, token, server and per-key limits, single use.

:func:`admit` either returns an :class:`Admission` (the consumed record, and the per-key slot
this socket took) or raises :class:`Refused`, which the endpoint answers in one place, in the
words of its client protocol. Nothing here knows which protocol that is.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ..codes import CloseCode, ErrorCode
from ..store import ConsumeOutcome, SessionRecord, StoreUnavailable
from ..tokens import TokenError, verify_token

log = logging.getLogger("speko_bridge.session")


class Refused(Exception):
    """This socket may not start a session: answer with ``error_code`` and close with ``code``."""

    def __init__(self, code: CloseCode, error_code: ErrorCode | str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.error_code = error_code
        self.message = message


@dataclass(slots=True)
class Slot:
    """A claim on an API key's concurrent-session limit: ``(owner, member)`` in the store."""

    owner: str
    member: str


@dataclass(slots=True)
class Admission:
    record: SessionRecord
    slot: Slot | None


_CONSUME_REFUSALS = {
    ConsumeOutcome.NOT_FOUND: (ErrorCode.INVALID_TOKEN, "token does not match any session"),
    ConsumeOutcome.USED: (ErrorCode.TOKEN_USED, "token already used"),
    ConsumeOutcome.EXPIRED: (ErrorCode.TOKEN_EXPIRED, "token expired"),
    ConsumeOutcome.REVOKED: (ErrorCode.SESSION_REVOKED, "session revoked"),
}


async def admit(state, token: str | None, origin: str | None, no_token: str) -> Admission:
    settings = state.settings
    if settings.allowed_origins is not None and origin not in settings.allowed_origins:
        raise Refused(CloseCode.ORIGIN_NOT_ALLOWED, ErrorCode.ORIGIN_NOT_ALLOWED,
                      f"origin {origin!r} not allowed")
    if state.draining:
        raise Refused(CloseCode.GOING_AWAY, ErrorCode.INTERNAL_ERROR, "server is shutting down")
    if token is None:
        raise Refused(CloseCode.BAD_TOKEN, ErrorCode.INVALID_TOKEN, no_token)
    try:
        claims = verify_token(settings.signing, token, issuer=settings.issuer,
                              audience=settings.audience, now=time.time())
    except TokenError as exc:
        raise Refused(CloseCode.BAD_TOKEN, exc.code, exc.message) from None
    if len(state.registry) >= settings.max_sessions:
        raise Refused(CloseCode.RATE_LIMITED, ErrorCode.RATE_LIMITED,
                      "this server is at its session limit; retry shortly")
    store = state.store
    slot = None
    try:
        if settings.max_sessions_per_key:
            # The slot is taken before the token is consumed, so a refusal leaves the token
            # usable for a retry once another session of the same key has ended.
            pending = await store.get(claims.session_id)
            if pending is not None:
                if not await store.acquire_slot(pending.owner, claims.session_id,
                                                settings.max_sessions_per_key, time.time()):
                    raise Refused(CloseCode.RATE_LIMITED, ErrorCode.RATE_LIMITED,
                                  "this API key is at its concurrent session limit; retry shortly")
                slot = Slot(pending.owner, claims.session_id)
        result = await store.consume(claims.session_id, claims.jti, time.time())
    except StoreUnavailable as exc:
        log.warning("socket refused, store unavailable: %s", exc)
        await release(store, slot)
        raise Refused(CloseCode.INTERNAL_ERROR, ErrorCode.INTERNAL_ERROR,
                      "session store unavailable") from None
    if result.outcome is not ConsumeOutcome.OK:
        await release(store, slot)
        error_code, message = _CONSUME_REFUSALS[result.outcome]
        raise Refused(CloseCode.BAD_TOKEN, error_code, message)
    return Admission(result.record, slot)


async def release(store, slot: Slot | None) -> None:
    """Give back a per-key slot; a store that is down lets the lease run out by itself."""
    if slot is None:
        return
    try:
        await store.release_slot(slot.owner, slot.member)
    except StoreUnavailable as exc:  # the lease runs out by itself (SLOT_LEASE_SECONDS)
        log.warning("session slot not released: %s", exc, extra={"session_id": slot.member})
