"""The sessions live in this process, by id: revocation, lease renewal and drain reach them here."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from ..codes import CloseCode, ErrorCode

if TYPE_CHECKING:
    from .runner import Session


class SessionRegistry:
    def __init__(self) -> None:
        self._live: dict[str, Session] = {}
        self._reserved = 0  # admitted sockets whose session has not started yet

    def __len__(self) -> int:
        return len(self._live)

    def reserve(self, limit: int) -> bool:
        """Take a place for a session about to start, unless ``limit`` are live or reserved.
        Synchronous on purpose: no await between the check and the count."""
        if len(self._live) + self._reserved >= limit:
            return False
        self._reserved += 1
        return True

    def cancel_reservation(self) -> None:
        self._reserved -= 1

    def sessions(self) -> list[Session]:
        return list(self._live.values())

    def get(self, session_id: str) -> Session | None:
        """The live session with this id in this process, if any (a resume finds it here)."""
        return self._live.get(session_id)

    def add(self, session: Session) -> None:
        """A reserved place becomes a live session."""
        self._reserved -= 1
        self._live[session.session_id] = session

    def remove(self, session: Session) -> None:
        if self._live.get(session.session_id) is session:
            del self._live[session.session_id]

    def revoke(self, session_id: str) -> bool:
        session = self._live.get(session_id)
        if session is None:
            return False
        session.end(CloseCode.REVOKED, ErrorCode.SESSION_REVOKED, "session revoked")
        return True

    def close_all(self, code: int, error_code: str | None, message: str) -> None:
        for session in list(self._live.values()):
            session.end(code, error_code, message)

    async def wait_empty(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._live and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return not self._live
