"""The session store contract, run against every backend (SQLite now; Redis later runs
this same suite unchanged by adding itself to ``BACKENDS``)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from speko_bridge.params import SessionParams
from speko_bridge.store import (
    ConsumeOutcome,
    SessionRecord,
    SQLiteStore,
    StoreUnavailable,
    UsageTotals,
)

BACKENDS = ["sqlite"]


def make_store(backend: str, tmp_path: Path):
    if backend == "sqlite":
        return SQLiteStore(tmp_path / "store.db", busy_timeout_ms=200)
    raise AssertionError(backend)


@pytest.fixture(params=BACKENDS)
async def store(request, tmp_path):
    s = make_store(request.param, tmp_path)
    await s.open()
    yield s
    await s.close()


def record(session_id="sess_1", owner="key_a", jti="jti_1", window=60.0, now=None) -> SessionRecord:
    now = time.time() if now is None else now
    params = SessionParams(provider="openai", model="gpt-realtime", metadata={"user": "u1"},
                           ttl_seconds=600)
    return SessionRecord(
        session_id=session_id, owner=owner, provider="openai", model="gpt-realtime",
        status="pending", params=params, jti=jti, created_at=now,
        token_expires_at=now + window, ttl_seconds=600,
    )


async def test_create_then_get_only_for_owner(store):
    await store.create(record())
    got = await store.get("sess_1", "key_a")
    assert got.status == "pending"
    assert got.params.metadata == {"user": "u1"}
    assert await store.get("sess_1", "key_b") is None
    assert await store.get("sess_missing", "key_a") is None


async def test_consume_is_single_use(store):
    await store.create(record())
    first = await store.consume("sess_1", "jti_1", time.time())
    assert first.outcome is ConsumeOutcome.OK
    assert first.record.status == "active" and first.record.started_at is not None
    again = await store.consume("sess_1", "jti_1", time.time())
    assert again.outcome is ConsumeOutcome.USED


async def test_consume_wrong_jti_or_unknown_session(store):
    await store.create(record())
    assert (await store.consume("sess_1", "jti_other", time.time())).outcome is ConsumeOutcome.NOT_FOUND
    assert (await store.consume("sess_x", "jti_1", time.time())).outcome is ConsumeOutcome.NOT_FOUND
    # the wrong guesses did not burn the real token
    assert (await store.consume("sess_1", "jti_1", time.time())).outcome is ConsumeOutcome.OK


async def test_consume_after_expiry_fails_and_record_shows_expired(store):
    now = time.time()
    await store.create(record(now=now - 120, window=60))
    assert (await store.consume("sess_1", "jti_1", now)).outcome is ConsumeOutcome.EXPIRED
    assert (await store.get("sess_1", "key_a")).status == "expired"
    assert await store.expire_stale(now) == 1
    assert await store.expire_stale(now) == 0


async def test_revoke_is_idempotent_and_blocks_consume(store):
    await store.create(record())
    assert (await store.revoke("sess_1", "key_b", time.time())) is None
    revoked = await store.revoke("sess_1", "key_a", time.time())
    assert revoked.status == "revoked"
    assert (await store.revoke("sess_1", "key_a", time.time())).status == "revoked"
    assert (await store.consume("sess_1", "jti_1", time.time())).outcome is ConsumeOutcome.REVOKED


async def test_finish_records_close_and_usage(store):
    await store.create(record())
    await store.consume("sess_1", "jti_1", time.time())
    await store.add_usage("sess_1", UsageTotals(10, 20))
    await store.add_usage("sess_1", UsageTotals(1, 2))
    assert (await store.get("sess_1", "key_a")).usage == UsageTotals(11, 22)
    await store.finish("sess_1", status="ended", close_code=1000, close_reason="bye",
                       usage=UsageTotals(11, 22), now=time.time())
    got = await store.get("sess_1", "key_a")
    assert (got.status, got.close_code, got.close_reason) == ("ended", 1000, "bye")
    assert got.ended_at is not None and got.usage == UsageTotals(11, 22)
    # an ended session cannot be revoked back to life
    assert (await store.revoke("sess_1", "key_a", time.time())).status == "ended"


async def test_finish_keeps_revoked_status(store):
    await store.create(record())
    await store.consume("sess_1", "jti_1", time.time())
    await store.revoke("sess_1", "key_a", time.time())
    await store.finish("sess_1", status="ended", close_code=4004, close_reason="session revoked",
                       usage=UsageTotals(), now=time.time())
    got = await store.get("sess_1", "key_a")
    assert got.status == "revoked" and got.close_code == 4004


async def test_fifty_concurrent_consumes_have_exactly_one_winner(store, tmp_path):
    await store.create(record())
    # Several independent store instances (connections, threads) race on one token, as
    # several server workers would.
    others = [make_store(BACKENDS[0], tmp_path) for _ in range(4)] if isinstance(store, SQLiteStore) else []
    for other in others:
        await other.open()
    try:
        stores = [store, *others]
        results = await asyncio.gather(
            *(stores[i % len(stores)].consume("sess_1", "jti_1", time.time()) for i in range(50))
        )
    finally:
        for other in others:
            await other.close()
    outcomes = [r.outcome for r in results]
    assert outcomes.count(ConsumeOutcome.OK) == 1
    assert outcomes.count(ConsumeOutcome.USED) == 49


async def test_ping_ok(store):
    await store.ping()


# ------------------------------------------------------------------ SQLite specifics


async def test_sqlite_survives_restart_and_uses_wal(tmp_path):
    s = SQLiteStore(tmp_path / "s.db")
    await s.open()
    await s.create(record())
    await s.close()
    s2 = SQLiteStore(tmp_path / "s.db")
    await s2.open()
    assert (await s2.get("sess_1", "key_a")).status == "pending"
    await s2.close()
    conn = sqlite3.connect(tmp_path / "s.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()


async def test_sqlite_refuses_newer_schema(tmp_path):
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    s = SQLiteStore(tmp_path / "s.db")
    with pytest.raises(StoreUnavailable, match="newer"):
        await s.open()
    await s.close()


async def test_sqlite_locked_database_is_unavailable_not_hung(tmp_path):
    s = SQLiteStore(tmp_path / "s.db", busy_timeout_ms=100)
    await s.open()
    blocker = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailable):
            await s.create(record())
        with pytest.raises(StoreUnavailable):
            await s.ping()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await s.create(record())  # and it recovers once the lock is gone
    await s.close()
