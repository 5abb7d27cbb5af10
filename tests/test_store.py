"""The session store contract, run unchanged against every backend: SQLite (a file in a
temp dir) and Redis (a real redis-server, see ``tests/redis_server.py``)."""

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
from speko_bridge.store.redis import RedisStore
from speko_bridge.store.sqlite import MIGRATIONS

from .redis_server import RedisServer

BACKENDS = ["sqlite", "redis"]


def make_store(backend: str, tmp_path: Path, redis_url: str | None = None):
    if backend == "sqlite":
        return SQLiteStore(tmp_path / "store.db", busy_timeout_ms=200)
    if backend == "redis":
        # one prefix per test: tests share the server, never each other's keys
        return RedisStore(redis_url, prefix=f"test:{tmp_path.name}:")
    raise AssertionError(backend)


@pytest.fixture(params=BACKENDS)
async def store(request, tmp_path):
    redis_url = request.getfixturevalue("redis_server").url if request.param == "redis" else None
    s = make_store(request.param, tmp_path, redis_url)
    s.backend = request.param
    s.redis_url = redis_url
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
    assert (await store.get("sess_1", "key_a")).status == "pending"  # another key's revoke did nothing
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


#: Consumers racing on one token, each on its own store instance (its own connection and,
#: for SQLite, its own thread and connection), as the workers of a fleet would.
RACERS = 50


async def test_fifty_concurrent_consumes_have_exactly_one_winner(store, tmp_path):
    await store.create(record())
    racers = [make_store(store.backend, tmp_path, store.redis_url) for _ in range(RACERS)]
    for racer in racers:
        racer.busy_timeout_ms = 10_000  # 50 writers queue for SQLite's lock; none may give up
        await racer.open()
        await racer.get("sess_1")  # connected and warm: each racer's first command goes at once
    # All racers leave the barrier in the same event-loop turn, so every one has sent its
    # first command before any answer is read: a consume that reads, then writes in a second
    # step, lets them all read "pending" and fails here every run, not now and then.
    barrier = asyncio.Barrier(RACERS)

    async def race(racer):
        await barrier.wait()
        return await racer.consume("sess_1", "jti_1", time.time())

    try:
        results = await asyncio.gather(*(race(r) for r in racers))
    finally:
        for racer in racers:
            await racer.close()
    outcomes = [r.outcome for r in results]
    assert outcomes.count(ConsumeOutcome.OK) == 1, outcomes.count(ConsumeOutcome.OK)
    assert outcomes.count(ConsumeOutcome.USED) == RACERS - 1
    assert (await store.get("sess_1", "key_a")).status == "active"


async def test_ping_succeeds_on_a_live_store_and_fails_once_it_cannot_take_a_mint(store, tmp_path, request):
    await store.ping()
    if store.backend == "sqlite":
        # another process holds the write lock: reads still work, a mint would not
        blocker = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreUnavailable):
                await store.ping()
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
    else:
        server = request.getfixturevalue("redis_server")
        server.stop()
        try:
            with pytest.raises(StoreUnavailable):
                await store.ping()
        finally:
            server.start()
    await store.ping()  # the backend is back: so is the store
    await store.close()
    with pytest.raises(StoreUnavailable):
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
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
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


# ------------------------------------------------------------------ limits, every backend


async def test_mint_allowance_is_burst_then_rate(store):
    now = 1000.0
    # 60 per minute, burst 3: three at once, then one per second
    assert [await store.take_mint("key_a", 60, 3, now) for _ in range(3)] == [0, 0, 0]
    wait = await store.take_mint("key_a", 60, 3, now)
    assert 0.9 <= wait <= 1.0
    assert await store.take_mint("key_b", 60, 3, now) == 0  # keys do not share an allowance
    assert await store.take_mint("key_a", 60, 3, now + 1.0) == 0
    assert await store.take_mint("key_a", 60, 3, now + 1.0) > 0


async def test_concurrent_session_slots_per_key(store):
    now = time.time()
    assert await store.acquire_slot("key_a", "s1", 2, now)
    assert await store.acquire_slot("key_a", "s2", 2, now)
    assert not await store.acquire_slot("key_a", "s3", 2, now)
    assert await store.acquire_slot("key_a", "s2", 2, now)  # already holds one: idempotent
    assert await store.acquire_slot("key_b", "s4", 2, now)
    await store.release_slot("key_a", "s1")
    assert await store.acquire_slot("key_a", "s3", 2, now)


# ------------------------------------------------------------------ Redis specifics


async def test_redis_slots_of_a_dead_replica_free_themselves(redis_server, tmp_path):
    s = RedisStore(redis_server.url, prefix=f"test:{tmp_path.name}:")
    await s.open()
    now = time.time()
    assert await s.acquire_slot("key_a", "s1", 1, now)
    assert not await s.acquire_slot("key_a", "s2", 1, now + 30)
    await s.renew_slots([("key_a", "s1")], now + 30)  # a live replica renews its lease
    assert not await s.acquire_slot("key_a", "s2", 1, now + 70)
    # no renewal for a lease period: the holder is presumed dead
    assert await s.acquire_slot("key_a", "s2", 1, now + 91)
    await s.close()


async def test_redis_revoke_reaches_every_watcher(redis_server, tmp_path):
    prefix = f"test:{tmp_path.name}:"
    a, b = RedisStore(redis_server.url, prefix=prefix), RedisStore(redis_server.url, prefix=prefix)
    await a.open()
    await b.open()
    heard: asyncio.Queue[str] = asyncio.Queue()
    watcher = asyncio.create_task(b.watch_revocations(heard.put_nowait))
    try:
        await asyncio.sleep(0.2)  # subscribed
        await a.create(record())
        await a.consume("sess_1", "jti_1", time.time())
        await a.revoke("sess_1", "key_a", time.time())
        assert await asyncio.wait_for(heard.get(), 2) == "sess_1"
        # a pending session has no socket anywhere: nothing to announce
        await a.create(record(session_id="sess_2", jti="jti_2"))
        await a.revoke("sess_2", "key_a", time.time())
        assert await b.revoked_among(["sess_1", "sess_2", "sess_x"]) == ["sess_1", "sess_2"]
        await asyncio.sleep(0.2)
        assert heard.empty()
    finally:
        watcher.cancel()
        await a.close()
        await b.close()


async def test_redis_records_survive_a_server_restart_and_expire(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    try:
        s = RedisStore(server.url, retention_seconds=3600)
        await s.open()
        await s.create(record())
        await s.consume("sess_1", "jti_1", time.time())
        await s.add_usage("sess_1", UsageTotals(10, 20))
        await s.finish("sess_1", status="ended", close_code=1000, close_reason="bye",
                       usage=UsageTotals(10, 20), now=time.time())
        assert 3500 < await s.redis.ttl("speko:s:sess_1") <= 3600  # kept for the retention period
        await s.close()
        server.restart()
        s = RedisStore(server.url)
        await s.open()
        got = await s.get("sess_1", "key_a")
        assert (got.status, got.close_code, got.usage) == ("ended", 1000, UsageTotals(10, 20))
        await s.close()
    finally:
        server.stop()


async def test_redis_down_is_unavailable_fast_and_recovers(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    s = RedisStore(server.url, socket_timeout=0.5)
    await s.open()
    server.stop()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await s.create(record())
    with pytest.raises(StoreUnavailable):
        await s.consume("sess_1", "jti_1", time.time())
    with pytest.raises(StoreUnavailable):
        await s.ping()
    assert time.monotonic() - started < 5
    server.start()
    await s.create(record())
    assert (await s.consume("sess_1", "jti_1", time.time())).outcome is ConsumeOutcome.OK
    await s.close()
    server.stop()


async def test_a_burst_of_concurrent_calls_all_succeed(store):
    # e.g. every session of a draining replica writing its record at once
    await asyncio.gather(*(store.create(record(f"sess_{i}", jti=f"jti_{i}")) for i in range(300)))
    results = await asyncio.gather(*(store.consume(f"sess_{i}", f"jti_{i}", time.time()) for i in range(300)))
    assert all(r.outcome is ConsumeOutcome.OK for r in results)
    await asyncio.gather(*(store.finish(f"sess_{i}", status="ended", close_code=1001, close_reason="drain",
                                        usage=UsageTotals(1, 2), now=time.time()) for i in range(300)))
    assert {(await store.get(f"sess_{i}", "key_a")).close_code for i in range(300)} == {1001}


async def test_grace_window_is_seen_by_another_process_and_only_while_active(store, tmp_path):
    """Resume (v2): the replica holding a session marks its grace window in the store; a
    second store object on the same backend (another replica) reads it, until it passes,
    the session takes a socket back, or the session ends."""
    now = time.time()
    await store.create(record())
    await store.mark_away("sess_1", now + 15)  # pending: nothing to resume, not marked
    assert await store.away_until("sess_1", now) is None
    assert (await store.consume("sess_1", "jti_1", now)).outcome is ConsumeOutcome.OK
    other = make_store(store.backend, tmp_path, store.redis_url)
    await other.open()
    try:
        await store.mark_away("sess_1", now + 15)
        assert await other.away_until("sess_1", now) == pytest.approx(now + 15)
        assert await other.away_until("sess_1", now + 15.5) is None  # the window is over
        await store.mark_back("sess_1")
        assert await other.away_until("sess_1", now) is None
        await store.mark_away("sess_1", now + 15)
        await store.finish("sess_1", status="ended", close_code=1006, close_reason="client_gone",
                           usage=UsageTotals(), now=now)
        assert await other.away_until("sess_1", now) is None  # ended: not resumable
        assert await other.away_until("sess_unknown", now) is None
        await store.mark_away("sess_unknown", now + 15)  # no record: nothing created
        assert await other.get("sess_unknown") is None
    finally:
        await other.close()
