"""Writing a session's record: live usage as it comes, the final record when it ends.

The final write is retried for ``SPEKO_RECORD_RETRY_SECONDS`` while the store is
unavailable; a write that never lands is logged and counted
(``speko_record_writes_failed_total{outcome="lost"}``), never silent.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..codes import CloseCode
from ..store import StoreUnavailable, UsageTotals

log = logging.getLogger("speko_bridge.session")

#: Longest pause between two tries of the final record write.
RETRY_DELAY_MAX = 5.0


async def add_usage(store, session_id: str, delta: UsageTotals, log_context: dict) -> None:
    try:
        await store.add_usage(session_id, delta)
    except StoreUnavailable as exc:
        # the totals still reach the record at the end of the session (finish)
        log.warning("live usage not written: %s", exc, extra=log_context)


async def write_final(state, session_id: str, code: int, message: str, usage: UsageTotals,
                      log_context: dict) -> None:
    status = "revoked" if code == CloseCode.REVOKED else "ended"
    failed = state.metrics.record_writes_failed
    deadline = time.monotonic() + state.settings.record_retry_seconds
    delay = 0.1
    try:
        while True:
            try:
                await state.store.finish(session_id, status=status, close_code=code,
                                         close_reason=message, usage=usage, now=time.time())
                return
            except StoreUnavailable as exc:
                if time.monotonic() + delay > deadline:
                    failed.labels("lost").inc()
                    log.error("session record not written, gave up: %s", exc,
                              extra={**log_context, "close_code": code})
                    return
                failed.labels("retried").inc()
                log.warning("session record not written, retrying in %.1f s: %s", delay, exc,
                            extra=log_context)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_DELAY_MAX)
    except asyncio.CancelledError:
        failed.labels("lost").inc()
        log.error("session record not written: server stopped while retrying",
                  extra={**log_context, "close_code": code})
        raise
