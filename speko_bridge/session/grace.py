"""The grace window of a session whose client socket dropped (docs/protocol.md, "Resuming
after a dropped connection").

A socket that ends with no close handshake (1006: network loss, a laptop lid, a proxy that
cut the TCP connection) does not end a resumable session. For ``SPEKO_RESUME_SECONDS``:

- the assistant's in-flight response is cancelled at the audio actually delivered (the
  same provider call an ``interrupt`` makes, with the bytes the client writer sent);
- nothing is kept for the absent client: the outbox is emptied and whatever the provider
  still says is dropped as it comes (the cut response's transcripts are not replayed);
  usage still counts toward the totals;
- the provider connection, the conversation, the TTL clock, the per-key slot and the
  session's place in the registry stay: revocation, TTL and drain end it as usual;
- the store records the window, so another replica answers a resume with 4001
  ``session_elsewhere`` instead of ``token_used``.

A socket with the same token takes the session back (:meth:`Grace.take_back`, synchronous,
so of two racing sockets exactly one wins); when the window passes the session ends with
1006 ``client_gone``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from ..codes import CloseCode, ErrorCode
from ..store import StoreUnavailable
from .phase import Phase

if TYPE_CHECKING:
    from .runner import Session

log = logging.getLogger("speko_bridge.session")


class Grace:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.seconds = session.state.settings.resume_seconds
        #: The phase to return to when a socket takes the session back (what the provider
        #: side was doing: it keeps changing while the client is away).
        self.resume_phase = Phase.READY
        self._timer: asyncio.TimerHandle | None = None
        self.until = 0.0  # epoch seconds: end of the current window
        self._store_order = asyncio.Lock()  # marks reach the store in the order they were made

    def applies(self, code: int | None) -> bool:
        """Whether a socket that ended with ``code`` leaves the session waiting for its client."""
        session = self.session
        return (code == CloseCode.ABNORMAL and self.seconds > 0 and session.client.resumable
                and session.outcome is None and not session.state.draining)

    def begin(self) -> None:
        """The client is gone: cut the response at what it heard, keep nothing for it, start
        the clock. Synchronous up to the provider and store calls, which run in the background."""
        session = self.session
        self.resume_phase = session.phase
        session.phase = Phase.CLIENT_AWAY
        played_ms = session.played_ms()
        session.toward_client.drop_audio()
        session.outbox.clear()
        if session.provider is not None:
            session.spawn(session.upstream.send(session.provider.interrupt(played_ms)))
        self.until = time.time() + self.seconds
        self._timer = asyncio.get_running_loop().call_later(self.seconds, self._over)
        session.spawn(self._mark(True))
        log.info("client dropped, session waits %.0f s for it", self.seconds, extra=session.log_context)

    def take_back(self) -> bool:
        """A socket with the session's token asks for it: True (and the session is no longer
        away) if it is away, else False. No await: two racing sockets cannot both win."""
        session = self.session
        if session.phase is not Phase.CLIENT_AWAY or session.outcome is not None:
            return False
        self.cancel()
        session.phase = self.resume_phase
        session.spawn(self._mark(False))
        return True

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _over(self) -> None:
        session = self.session
        self._timer = None
        if session.phase is not Phase.CLIENT_AWAY or session.outcome is not None:
            return
        session.state.metrics.sessions_ended_in_grace.labels(session.record.provider).inc()
        session.end(CloseCode.ABNORMAL, ErrorCode.CLIENT_GONE,
                    f"{ErrorCode.CLIENT_GONE}: the client did not come back within {self.seconds:g} s")

    async def _mark(self, away: bool) -> None:
        store = self.session.state.store
        async with self._store_order:
            await self._write_mark(store, away)

    async def _write_mark(self, store, away: bool) -> None:
        try:
            if away:
                await store.mark_away(self.session.session_id, self.until)
            else:
                await store.mark_back(self.session.session_id)
        except StoreUnavailable as exc:  # the window still holds here; other replicas say token_used
            log.warning("grace window not recorded: %s", exc, extra=self.session.log_context)
