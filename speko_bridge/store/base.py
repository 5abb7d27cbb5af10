"""The session store interface: one contract, several backends (SQLite now, Redis later).

The test suite ``tests/test_store.py`` is written against this interface only, so every
backend runs it unchanged.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Iterable
from typing import Any, Literal

import msgspec

from ..params import SessionParams
from ..wire import UsageTotals

Status = Literal["pending", "active", "ended", "expired", "revoked"]


class SessionRecord(msgspec.Struct, rename="camel", omit_defaults=False):
    """A session as ``GET /v1/sessions/{id}`` shows it (timestamps are epoch seconds here;
    the API renders them as ISO-8601)."""

    session_id: str
    owner: str  # API key id; never shown to anyone but the owner, who knows it anyway
    provider: str
    model: str
    status: Status
    params: SessionParams
    jti: str
    created_at: float
    token_expires_at: float
    ttl_seconds: int
    started_at: float | None = None
    ended_at: float | None = None
    close_code: int | None = None
    close_reason: str | None = None
    usage: UsageTotals = msgspec.field(default_factory=UsageTotals)

    @property
    def metadata(self) -> dict[str, Any] | None:
        return self.params.metadata


class ConsumeOutcome(enum.Enum):
    OK = "ok"
    NOT_FOUND = "not_found"
    USED = "used"
    EXPIRED = "expired"
    REVOKED = "revoked"


class ConsumeResult(msgspec.Struct):
    outcome: ConsumeOutcome
    record: SessionRecord | None = None


#: A live session's claim on its API key's concurrent-session limit lasts this long unless
#: renewed; replicas renew every ``SLOT_RENEW_SECONDS``, so a replica that dies frees its
#: slots within a minute instead of holding them forever.
SLOT_LEASE_SECONDS = 60.0
SLOT_RENEW_SECONDS = 15.0


class StoreUnavailable(Exception):
    """The backing store cannot be reached or failed; the API answers 503."""


class SessionStore(abc.ABC):
    """Async session store. Every method may raise :class:`StoreUnavailable`.

    Besides the records, the store holds the state limits need (mint rate and concurrent
    sessions per API key). The defaults here keep it in this process, which is exact for a
    single replica (the SQLite store); the Redis store overrides them to share it across the
    fleet."""

    def __init__(self) -> None:
        self._mint_tat: dict[str, float] = {}  # GCRA theoretical arrival time per key
        self._slots: dict[str, set[str]] = {}  # live session ids per key

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailable when the store is not reachable."""

    @abc.abstractmethod
    async def create(self, record: SessionRecord) -> None: ...

    @abc.abstractmethod
    async def get(self, session_id: str, owner: str | None = None) -> SessionRecord | None:
        """The record, or None if absent or (when ``owner`` is given) owned by another key.
        A pending record whose token window has passed is reported as ``expired``."""

    @abc.abstractmethod
    async def consume(self, session_id: str, jti: str, now: float) -> ConsumeResult:
        """Atomically move ``pending -> active`` for this jti, at most once, only before the
        token expires. Exactly one of any number of concurrent callers gets OK."""

    @abc.abstractmethod
    async def revoke(self, session_id: str, owner: str, now: float) -> SessionRecord | None:
        """Mark pending/active sessions revoked (idempotent); None if not the owner's."""

    @abc.abstractmethod
    async def finish(
        self,
        session_id: str,
        *,
        status: Status,
        close_code: int,
        close_reason: str,
        usage: UsageTotals,
        now: float,
    ) -> None:
        """Record the end of a connected session; ``usage`` is the session's total.
        A session already marked ``revoked`` keeps that status."""

    @abc.abstractmethod
    async def add_usage(self, session_id: str, usage: UsageTotals) -> None:
        """Add one response's usage to the running totals (live view while connected)."""

    @abc.abstractmethod
    async def expire_stale(self, now: float) -> int:
        """Mark pending sessions whose token window passed as expired; return how many."""

    async def delete_old(self, now: float) -> int:
        """Delete records past their retention; return how many. The default does nothing:
        the Redis store's keys expire by themselves."""
        return 0

    # -- limits (process-local defaults; see the class docstring) --------------------------

    async def take_mint(self, owner: str, per_minute: int, burst: int, now: float) -> float:
        """Take one mint from ``owner``'s allowance (``burst`` at once, refilled at
        ``per_minute``); 0 if allowed, else the seconds until the next one would be."""
        interval = 60.0 / per_minute
        tat = max(self._mint_tat.get(owner, 0.0), now)
        wait = tat + interval - now - burst * interval
        if wait > 0:
            return wait
        self._mint_tat[owner] = tat + interval
        return 0.0

    async def acquire_slot(self, owner: str, session_id: str, limit: int, now: float) -> bool:
        """Count ``session_id`` against ``owner``'s concurrent sessions unless ``limit`` are
        already live; True if it got a slot."""
        live = self._slots.setdefault(owner, set())
        if session_id not in live and len(live) >= limit:
            return False
        live.add(session_id)
        return True

    async def release_slot(self, owner: str, session_id: str) -> None:
        live = self._slots.get(owner)
        if live is not None:
            live.discard(session_id)
            if not live:
                del self._slots[owner]

    async def renew_slots(self, slots: Iterable[tuple[str, str]], now: float) -> None:
        """Extend the leases of this replica's live sessions (no leases in one process)."""

    async def revoked_among(self, session_ids: Iterable[str]) -> list[str]:
        """Which of these live sessions another replica revoked (none: one process revokes
        its own sockets directly)."""
        return []

    async def watch_revocations(self, on_revoke: Callable[[str], object]) -> None:
        """Call ``on_revoke(session_id)`` when another replica revokes a session; returns at
        once when there are no other replicas."""

    # -- resume after a dropped client socket (process-local defaults, as above) -----------

    @abc.abstractmethod
    async def mark_away(self, session_id: str, until: float) -> None:
        """The session's client dropped: it may be resumed (on the replica that holds it)
        until ``until`` (epoch seconds). Other replicas read it with :meth:`away_until`."""

    @abc.abstractmethod
    async def mark_back(self, session_id: str) -> None:
        """The session has a live socket again (or ended): no longer in a grace window."""

    @abc.abstractmethod
    async def away_until(self, session_id: str, now: float) -> float | None:
        """The end of the session's grace window if it is active and in one at ``now``,
        else None."""
