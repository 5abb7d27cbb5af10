"""Who may start a session: origin, drain, token, server and per-key limits, single use.

:func:`admit` either returns an :class:`Admission` (the consumed record, and the per-key slot
this socket took), a :class:`Resume` (the token's session is live in this process and waiting
for its client: this socket takes it back), or raises :class:`Refused`, which the endpoint
answers in one place, in the words of its client protocol. Nothing here knows which protocol
that is.

Resuming (docs/protocol.md, v2): a token whose session is live here is a resume, not a new
session: it takes no server place and no per-key slot (the session holds both already), and
it wins only while the session's client is away (one live socket per session: otherwise
4001 ``token_used``). The token's opening window bounds the first open only. A used token
whose session is in its grace window on another replica (the store says so) is refused with
4001 ``session_elsewhere``, so that the client mints a new session instead of retrying.

Overload (``speko_bridge/load.py``): while the measured load is over its limits, a new
session is refused with 4029 ``overloaded`` after its token is checked but before it is
consumed, so the same token still opens a session later or on another replica. A resume
is not new load and is admitted whatever the load.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..codes import CloseCode, ErrorCode
from ..store import ConsumeOutcome, SessionRecord, StoreUnavailable
from ..tokens import TokenError, verify_token

if TYPE_CHECKING:
    from .runner import Session

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
    """A claim on an API key's concurrent-session limit: ``(owner, member)`` in the store.

    The member is the session id plus a nonce of this socket's own, so a slot is released
    only by the socket that took it: a replayed token that gets as far as taking a slot
    (two sockets racing with one fresh token) takes its own, and giving it back never frees
    the slot of the session that is live."""

    owner: str
    member: str


@dataclass(slots=True)
class Admission:
    record: SessionRecord
    slot: Slot | None


@dataclass(slots=True)
class Resume:
    """This socket took back ``session``, whose client was away (it is attached next)."""

    session: Session


#: A record that is no longer pending: its token was used, or can no longer be.
_STATUS_REFUSALS = {
    "active": (ErrorCode.TOKEN_USED, "token already used"),
    "ended": (ErrorCode.TOKEN_USED, "token already used"),
    "expired": (ErrorCode.TOKEN_EXPIRED, "token expired"),
    "revoked": (ErrorCode.SESSION_REVOKED, "session revoked"),
}

_CONSUME_REFUSALS = {
    ConsumeOutcome.NOT_FOUND: (ErrorCode.INVALID_TOKEN, "token does not match any session"),
    ConsumeOutcome.USED: (ErrorCode.TOKEN_USED, "token already used"),
    ConsumeOutcome.EXPIRED: (ErrorCode.TOKEN_EXPIRED, "token expired"),
    ConsumeOutcome.REVOKED: (ErrorCode.SESSION_REVOKED, "session revoked"),
}


async def admit(state, token: str | None, origin: str | None, no_token: str,
                codec: type | None = None) -> Admission | Resume:
    """``codec``: the client codec class of the endpoint (a session is resumed only through
    the endpoint that opened it)."""
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
        # a resume may come after the token's opening window: a live session here decides
        claims = _expired_claims(settings, token, exc)
        if claims is None:
            raise Refused(CloseCode.BAD_TOKEN, exc.code, exc.message) from None
        if state.registry.get(claims.session_id) is None:
            raise await _used(state, claims.session_id, exc.code, exc.message) from None
    live = state.registry.get(claims.session_id)
    if live is not None:
        return _resume(state, live, claims, codec)
    now = time.monotonic()
    if state.load.refusing(now) is not None:
        state.metrics.overload_refusals.labels("socket").inc()
        raise Refused(CloseCode.RATE_LIMITED, ErrorCode.OVERLOADED,
                      "this server is overloaded; retry shortly or elsewhere (token not used)")
    # Counted and reserved before any await, so concurrent opens cannot all pass the check.
    if not state.registry.reserve(settings.max_sessions):
        raise Refused(CloseCode.RATE_LIMITED, ErrorCode.RATE_LIMITED,
                      "this server is at its session limit; retry shortly")
    state.load.arrived(claims.session_id, now)
    try:
        return await _consume(state, claims)
    except BaseException:
        state.registry.cancel_reservation()
        state.load.left(claims.session_id)
        raise


def _expired_claims(settings, token: str, exc: TokenError):
    """The claims of a token refused only for its expiry, else None."""
    if exc.code != ErrorCode.TOKEN_EXPIRED:
        return None
    try:
        return verify_token(settings.signing, token, issuer=settings.issuer,
                            audience=settings.audience, now=time.time(), check_expiry=False)
    except TokenError:
        return None


def _resume(state, session: Session, claims, codec: type | None) -> Resume:
    """Take back ``session`` for this socket, or refuse. No await: of two sockets racing
    with one token, exactly one takes it."""
    metrics = state.metrics
    if session.record.jti != claims.jti:
        raise Refused(CloseCode.BAD_TOKEN, ErrorCode.INVALID_TOKEN, "token does not match any session")
    ended = session.outcome
    if ended is not None and ended.error_code == ErrorCode.SESSION_REVOKED:
        # revoked and still closing here: the same answer the token gets once it is gone
        raise Refused(CloseCode.BAD_TOKEN, ErrorCode.SESSION_REVOKED, "session revoked")
    metrics.resumes_attempted.inc()
    if (codec is not None and type(session.client) is not codec) or not session.grace.take_back():
        metrics.resumes_refused.labels(ErrorCode.TOKEN_USED).inc()
        raise Refused(CloseCode.BAD_TOKEN, ErrorCode.TOKEN_USED, "token already used")
    return Resume(session)


async def _used(state, session_id: str, error_code: str, message: str) -> Refused:
    """The refusal of a token already used: ``session_elsewhere`` while the session waits
    for its client on another replica (the client should mint a new session), else as given."""
    try:
        away = await state.store.away_until(session_id, time.time())
    except StoreUnavailable:
        away = None
    if away is None:
        return Refused(CloseCode.BAD_TOKEN, error_code, message)
    state.metrics.resumes_attempted.inc()
    state.metrics.resumes_refused.labels(ErrorCode.SESSION_ELSEWHERE).inc()
    return Refused(CloseCode.BAD_TOKEN, ErrorCode.SESSION_ELSEWHERE,
                   "this session is held by another server; mint a new session")


async def _consume(state, claims) -> Admission:
    settings = state.settings
    store = state.store
    slot = None
    try:
        if settings.max_sessions_per_key:
            # The slot is taken before the token is consumed, so a refusal leaves the token
            # usable for a retry once another session of the same key has ended. A token
            # whose session is no longer pending is refused before it can take anything.
            pending = await store.get(claims.session_id)
            if pending is not None:
                if pending.status == "active" and pending.jti == claims.jti:
                    raise await _used(state, claims.session_id, *_STATUS_REFUSALS["active"])
                if pending.status in _STATUS_REFUSALS:
                    raise Refused(CloseCode.BAD_TOKEN, *_STATUS_REFUSALS[pending.status])
                member = f"{claims.session_id}.{secrets.token_hex(6)}"
                if not await store.acquire_slot(pending.owner, member,
                                                settings.max_sessions_per_key, time.time()):
                    raise Refused(CloseCode.RATE_LIMITED, ErrorCode.RATE_LIMITED,
                                  "this API key is at its concurrent session limit; retry shortly")
                slot = Slot(pending.owner, member)
        result = await store.consume(claims.session_id, claims.jti, time.time())
    except StoreUnavailable as exc:
        log.warning("socket refused, store unavailable: %s", exc)
        await release(store, slot)
        raise Refused(CloseCode.INTERNAL_ERROR, ErrorCode.INTERNAL_ERROR,
                      "session store unavailable") from None
    if result.outcome is not ConsumeOutcome.OK:
        await release(store, slot)
        error_code, message = _CONSUME_REFUSALS[result.outcome]
        if result.outcome is ConsumeOutcome.USED:
            raise await _used(state, claims.session_id, error_code, message)
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
