"""The Python SDK's reconnection (``connect(answer, reconnect=True)``), docs/protocol.md (v2)
"Resuming after a dropped connection".

What a socket's end means, and what the SDK does about it:

- **no close frame** (1006: Wi-Fi blip, proxy timeout, laptop lid): the bridge keeps the
  session for its grace window, so the SDK reconnects with the *same* token, with
  exponential backoff and equal jitter (each wait uniform in ``[cap/2, cap]``, ``cap =
  min(max_delay, base_delay * 2**attempt)``: the random half keeps a fleet of clients
  dropped at once from coming back at once, the fixed half keeps a run of short draws from
  spending every attempt in the first second of an outage), until ``window`` seconds have
  passed (or ``attempts``, when set, ran out). A network that comes back anywhere in the
  window is found within ``max_delay``. The bridge answers ``resumed`` and the
  conversation goes on.
- **resuming is impossible**: a ``session_elsewhere`` refusal (the socket reached a replica
  that does not hold the session), a 1001 close (the server drains), or the window/attempts
  ran out: ``get_session()`` (optional, the app's own mint) gives a fresh session and the
  SDK connects to it, announcing a ``restarted`` event (the conversation starts over).
- **anything else ends for good**: 1000 and the codes a retry cannot fix (4001 token
  refused, 4003 origin, 4004 revoked, 4008 TTL, 4009 protocol violation), and every other
  close the bridge sent on purpose.

Subscribers see ``reconnecting`` (each attempt), ``resumed`` or ``restarted``, and one final
``close``. Audio sent while disconnected is dropped, not queued: seconds-old speech is
worthless to a live conversation, and a queue would grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec

from .codes import CloseCode, ErrorCode
from .frames import Audio, Error, Resumed, decode_frame

if TYPE_CHECKING:
    from .client_connection import RealtimeConnection

#: How long a new socket may take to say ``resumed`` (or refuse) before the attempt counts as
#: failed: the bridge answers a resume with no provider round trip, in milliseconds.
RESUME_ANSWER_SECONDS = 5.0
#: A fresh session (``get_session``) is accepted when nothing refuses it this fast (as
#: ``CONFIRM_SECONDS`` in ``client_connection.py``).
FRESH_CONFIRM_SECONDS = 0.25


@dataclass
class Reconnect:
    """How to reconnect. ``window`` should not exceed the bridge's ``SPEKO_RESUME_SECONDS``
    (default 15): past it the session is gone. ``attempts``: at most this many resume
    attempts (None: as many as fit in the window)."""

    attempts: int | None = None
    base_delay: float = 0.25
    max_delay: float = 4.0
    window: float = 15.0
    #: ``async () -> mint answer`` (a ``Session`` or its JSON dict): a fresh session when the
    #: old one cannot be resumed. None: such an end is final.
    get_session: Callable[[], Awaitable[Any]] | None = None

    def __post_init__(self) -> None:
        if not (0 < self.base_delay <= self.max_delay):
            raise ValueError(f"Reconnect needs 0 < base_delay <= max_delay, not {self.base_delay}, {self.max_delay}")
        if not self.window > 0:
            raise ValueError(f"Reconnect needs window > 0, not {self.window}")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"Reconnect needs attempts >= 1 or None, not {self.attempts}")

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Equal jitter: uniform in [cap/2, cap], cap = min(max_delay, base_delay * 2**attempt)."""
        cap = min(self.max_delay, self.base_delay * (2 ** min(attempt, 62)))
        return cap / 2 + rng() * (cap / 2)


class Reconnecting(msgspec.Struct, tag="reconnecting", tag_field="type"):
    """The connection dropped; attempt ``attempt`` starts after ``delay`` seconds."""

    attempt: int
    delay: float
    code: int


class Restarted(msgspec.Struct, tag="restarted", tag_field="type", rename="camel"):
    """The old session could not be resumed; the SDK is now on a fresh one (``get_session``):
    the conversation starts over."""

    session_id: str


#: Ends that a retry cannot fix (and 1000: someone meant it).
FINAL_CODES = frozenset({CloseCode.NORMAL, CloseCode.BAD_TOKEN, CloseCode.ORIGIN_NOT_ALLOWED,
                         CloseCode.REVOKED, CloseCode.TTL_REACHED, CloseCode.PROTOCOL_VIOLATION})


def plan(code: int) -> str:
    """``resume``, ``restart`` or ``final`` for a socket that ended with ``code``."""
    if code == CloseCode.ABNORMAL:
        return "resume"
    if code == CloseCode.GOING_AWAY:
        return "restart"
    return "final"


async def reconnect_after(conn: RealtimeConnection, policy: Reconnect, code: int) -> bool:
    """Bring ``conn`` back after its socket ended with ``code``; True when a new socket is
    attached (``conn._ws``), False when the end is final."""
    kind = plan(code)
    if kind == "final":
        return False
    conn._reconnecting = True
    try:
        if kind == "resume":
            kind = await _resume(conn, policy, code)
            if kind != "restart":
                return kind == "resumed"
        return await _restart(conn, policy)
    finally:
        conn._reconnecting = False


async def _resume(conn: RealtimeConnection, policy: Reconnect, code: int) -> str:
    deadline = time.monotonic() + policy.window
    for attempt in itertools.count(1) if policy.attempts is None else range(1, policy.attempts + 1):
        wait = min(policy.delay(attempt), max(0.0, deadline - time.monotonic()))
        await conn._dispatch(Reconnecting(attempt, round(wait, 3), code))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await conn._stop_reconnect.wait()
        if conn._stop_reconnect.is_set():
            return "final"  # the app closed meanwhile
        if time.monotonic() >= deadline:
            break
        ws, first = await _open(conn, conn.url, conn._token, RESUME_ANSWER_SECONDS)
        if ws is None:
            continue  # unreachable for now: try again
        if isinstance(first, Resumed) and conn._stop_reconnect.is_set():
            await ws.close()
            return "final"
        if isinstance(first, Resumed):
            conn._ws = ws
            await conn._dispatch(first)
            return "resumed"
        with contextlib.suppress(Exception):
            await ws.close()
        if isinstance(first, Error) and first.code == ErrorCode.SESSION_ELSEWHERE:
            return "restart"
        if isinstance(first, Error):
            await conn._dispatch(first)  # why it is over (token_used, revoked...)
            return "final"
    return "restart"  # the window or the attempts ran out


async def _restart(conn: RealtimeConnection, policy: Reconnect) -> bool:
    if policy.get_session is None or conn._stop_reconnect.is_set():
        return False
    try:
        session = conn._as_session(await policy.get_session())
    except Exception:
        return False
    ws, first = await _open(conn, session.url, session.token, FRESH_CONFIRM_SECONDS)
    if ws is None or isinstance(first, Error) or conn._stop_reconnect.is_set():
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        return False
    conn.session, conn.url, conn._token = session, session.url, session.token
    conn.output_sample_rate = session.output_sample_rate
    conn._ws = ws
    await conn._dispatch(Restarted(session.session_id))
    if first is not None:
        await conn._dispatch(first)
    return True


async def _open(conn: RealtimeConnection, url: str, token: str, answer_within: float):
    """A new socket and its first frame (None if none came within ``answer_within`` s);
    (None, None) when it cannot be opened."""
    try:
        async with asyncio.timeout(conn._connect_timeout):
            ws = await conn._http.ws_connect(url, protocols=[token], origin=conn._origin,
                                             max_msg_size=4 * 1024 * 1024)
    except (TimeoutError, aiohttp.ClientError, OSError):
        return None, None
    try:
        async with asyncio.timeout(answer_within):
            msg = await ws.receive()
    except TimeoutError:
        return ws, None
    if msg.type is aiohttp.WSMsgType.TEXT:
        try:
            return ws, decode_frame(msg.data)
        except msgspec.DecodeError:
            return ws, None
    if msg.type is aiohttp.WSMsgType.BINARY:
        return ws, Audio(msg.data, conn.output_sample_rate)
    return None, None  # closed at once
