"""The session store interface: one contract, several backends (SQLite now, Redis later).

The test suite ``tests/test_store.py`` is written against this interface only, so every
backend runs it unchanged.
"""

from __future__ import annotations

import abc
import enum
from typing import Any, Literal

import msgspec

from ..params import SessionParams

Status = Literal["pending", "active", "ended", "expired", "revoked"]


class UsageTotals(msgspec.Struct, rename="camel"):
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0


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


class StoreUnavailable(Exception):
    """The backing store cannot be reached or failed; the API answers 503."""


class SessionStore(abc.ABC):
    """Async session store. Every method may raise :class:`StoreUnavailable`."""

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
