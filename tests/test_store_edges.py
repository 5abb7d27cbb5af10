"""Store edges a user of the session API would see, run against every backend (SQLite in a
temp dir, a real redis-server): records read back exactly as written, the exact end of a
token's window, what revoking and expiring write, and limits at rates and clock readings
the basic tests do not use. Found by ``make mutants`` (docs/testing.md)."""

from __future__ import annotations

import asyncio
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


@pytest.fixture(params=["sqlite", "redis"])
async def store(request, tmp_path: Path):
    if request.param == "sqlite":
        s = SQLiteStore(tmp_path / "store.db", busy_timeout_ms=200)
    else:
        s = RedisStore(request.getfixturevalue("redis_server").url, prefix=f"edges:{tmp_path.name}:")
    await s.open()
    yield s
    await s.close()


def make_record(session_id: str = "sess_1", jti: str = "jti_1", *, created: float, window: float = 60.0,
                owner: str = "key_a") -> SessionRecord:
    params = SessionParams(provider="google", model="gemini-live", voice="Puck",
                           metadata={"user": "u1", "n": 2}, ttl_seconds=900)
    return SessionRecord(
        session_id=session_id, owner=owner, provider="google", model="gemini-live",
        status="pending", params=params, jti=jti, created_at=created,
        token_expires_at=created + window, ttl_seconds=900,
    )


async def test_a_record_reads_back_exactly_as_created(store):
    now = time.time()
    rec = make_record(created=now)
    await store.create(rec)
    assert await store.get("sess_1", "key_a") == rec
    assert await store.get("sess_1") == rec  # no owner given: the server's own view


async def test_consume_and_revoke_return_the_whole_record(store):
    now = time.time()
    rec = make_record(created=now)
    await store.create(rec)
    won = await store.consume("sess_1", "jti_1", now + 1)
    assert won.outcome is ConsumeOutcome.OK
    expected_active = SessionRecord(**{**_fields(rec), "status": "active", "started_at": now + 1})
    assert won.record == expected_active
    revoked = await store.revoke("sess_1", "key_a", now + 2)
    assert revoked == SessionRecord(**{**_fields(expected_active), "status": "revoked", "ended_at": now + 2})


def _fields(rec: SessionRecord) -> dict:
    return {name: getattr(rec, name) for name in rec.__struct_fields__}


async def test_a_refused_consume_says_why_and_shows_the_record(store):
    now = time.time()
    await store.create(make_record("s_used", "j_used", created=now))
    await store.create(make_record("s_rev", "j_rev", created=now))
    assert (await store.consume("s_used", "j_used", now)).outcome is ConsumeOutcome.OK
    used = await store.consume("s_used", "j_used", now)
    assert (used.outcome, used.record.status, used.record.session_id) == (ConsumeOutcome.USED, "active", "s_used")
    await store.revoke("s_rev", "key_a", now)
    rev = await store.consume("s_rev", "j_rev", now)
    assert (rev.outcome, rev.record.status) == (ConsumeOutcome.REVOKED, "revoked")


async def test_a_token_is_dead_at_the_exact_second_its_window_ends(store):
    created = time.time() - 30
    await store.create(make_record(created=created, window=30))
    result = await store.consume("sess_1", "jti_1", created + 30)
    assert result.outcome is ConsumeOutcome.EXPIRED
    assert result.record.status == "expired"


async def test_revoking_a_live_session_stamps_its_end_and_a_pending_one_never_started(store):
    now = time.time()
    await store.create(make_record("s_live", "j_live", created=now))
    await store.create(make_record("s_idle", "j_idle", created=now))
    await store.consume("s_live", "j_live", now + 1)
    live = await store.revoke("s_live", "key_a", now + 5)
    assert (live.status, live.started_at, live.ended_at) == ("revoked", now + 1, now + 5)
    idle = await store.revoke("s_idle", "key_a", now + 5)
    assert (idle.status, idle.started_at, idle.ended_at) == ("revoked", None, None)


async def test_expire_stale_marks_only_windows_that_have_ended(store):
    now = time.time()
    await store.create(make_record("s_past", "j_past", created=now - 120, window=60))
    await store.create(make_record("s_edge", "j_edge", created=now - 60, window=60))  # ends exactly now
    await store.create(make_record("s_live", "j_live", created=now, window=60))
    assert await store.expire_stale(now) == 2
    assert [(await store.get(s)).status for s in ("s_past", "s_edge", "s_live")] == ["expired", "expired", "pending"]
    assert (await store.consume("s_past", "j_past", now)).outcome is ConsumeOutcome.EXPIRED
    assert (await store.consume("s_live", "j_live", now)).outcome is ConsumeOutcome.OK


async def test_usage_adds_up_per_session(store):
    now = time.time()
    await store.create(make_record("s_a", "j_a", created=now))
    await store.create(make_record("s_b", "j_b", created=now))
    await store.add_usage("s_a", UsageTotals(5, 7))
    await store.add_usage("s_a", UsageTotals(1, 1))
    await store.add_usage("s_b", UsageTotals(100, 0))
    assert (await store.get("s_a")).usage == UsageTotals(6, 8)
    assert (await store.get("s_b")).usage == UsageTotals(100, 0)


async def test_releasing_one_session_keeps_the_others_counted(store):
    now = time.time()
    assert await store.acquire_slot("key_a", "s1", 2, now)
    assert await store.acquire_slot("key_a", "s2", 2, now)
    await store.release_slot("key_a", "s1")
    assert await store.acquire_slot("key_a", "s3", 2, now)
    assert not await store.acquire_slot("key_a", "s4", 2, now)  # s2 and s3 are still live
    await store.release_slot("key_a", "s2")
    await store.release_slot("key_a", "s3")
    assert await store.acquire_slot("key_a", "s4", 2, now)
    assert await store.acquire_slot("key_a", "s5", 2, now)


async def test_mint_allowance_at_two_per_second(store):
    now = 5000.0
    # 120 per minute, burst 3: three at once, then one every half second
    assert [await store.take_mint("key_a", 120, 3, now) for _ in range(3)] == [0, 0, 0]
    assert await store.take_mint("key_a", 120, 3, now) == pytest.approx(0.5, abs=0.01)
    assert await store.take_mint("key_a", 120, 3, now + 0.5) == 0
    assert await store.take_mint("key_a", 120, 3, now + 0.5) == pytest.approx(0.5, abs=0.01)


async def test_the_first_mint_is_allowed_at_any_clock_reading(store):
    # a monotonic clock can read near zero just after boot
    assert await store.take_mint("key_a", 60, 1, 0.0) == 0
    assert await store.take_mint("key_a", 60, 1, 0.0) == pytest.approx(1.0, abs=0.01)


# ------------------------------------------------------------------ SQLite specifics


async def test_sqlite_one_bad_row_in_a_group_commit_fails_alone(tmp_path):
    """Concurrent mints share one commit; a row that cannot be written (here: a jti that is
    already taken) gets its own error and every other mint, including ones that arrive
    while the failed batch is being sorted out, is committed and visible to another
    connection (another worker process)."""
    path = tmp_path / "store.db"
    store = SQLiteStore(path, busy_timeout_ms=200)
    await store.open()
    try:
        now = time.time()
        await store.create(make_record("s_0", "j_0", created=now))
        batch = [asyncio.ensure_future(store.create(make_record(f"s_{i}", f"j_{i}", created=now)))
                 for i in (1, 2, 3)]
        dup = asyncio.ensure_future(store.create(make_record("s_dup", "j_0", created=now)))
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # the first batch is now being written
        later = [asyncio.ensure_future(store.create(make_record(f"s_{i}", f"j_{i}", created=now)))
                 for i in (4, 5)]
        results = await asyncio.wait_for(asyncio.gather(*batch, dup, *later, return_exceptions=True), 10)
        assert results[:3] + results[4:] == [None] * 5
        assert isinstance(results[3], StoreUnavailable)
        other = SQLiteStore(path, busy_timeout_ms=200)
        await other.open()
        try:
            for i in range(6):
                assert (await other.get(f"s_{i}")).jti == f"j_{i}"
            assert await other.get("s_dup") is None
        finally:
            await other.close()
    finally:
        await store.close()


async def test_sqlite_creates_missing_data_directories(tmp_path):
    store = SQLiteStore(tmp_path / "a" / "b" / "store.db")
    await store.open()
    try:
        await store.create(make_record(created=time.time()))
        assert (await store.get("sess_1")).status == "pending"
    finally:
        await store.close()


async def test_sqlite_close_leaves_one_complete_file_and_the_store_can_reopen(tmp_path):
    """After close the database is one self-contained file (the WAL is checkpointed away),
    which is what an operator copies as a backup; calls on a closed store say so; open()
    again brings the same store back."""
    path = tmp_path / "store.db"
    store = SQLiteStore(path)
    await store.open()
    await store.create(make_record(created=time.time()))
    await store.close()
    assert path.exists() and not Path(f"{path}-wal").exists()
    with pytest.raises(StoreUnavailable) as err:
        await store.get("sess_1")
    assert str(err.value) == "store is closed"
    await store.open()
    try:
        assert (await store.get("sess_1")).session_id == "sess_1"
    finally:
        await store.close()


async def test_a_grace_window_ends_exactly_at_its_end(store):
    now = time.time()
    await store.create(make_record(created=now))
    await store.consume("sess_1", "jti_1", now + 1)
    await store.mark_away("sess_1", now + 15)
    assert await store.away_until("sess_1", now + 14.999) == pytest.approx(now + 15)
    assert await store.away_until("sess_1", now + 15) is None  # the window is over at its end
    await store.mark_away("sess_1", now + 30)
    await store.mark_back("sess_1")
    assert await store.away_until("sess_1", now + 16) is None


async def test_redis_keeps_no_retention_sweep_of_its_own(redis_server, tmp_path: Path):
    """Redis records expire by their keys' TTL: the app's sweep has nothing to delete there."""
    s = RedisStore(redis_server.url, prefix=f"edges-ret:{tmp_path.name}:")
    await s.open()
    try:
        await s.create(make_record(created=time.time() - 30 * 24 * 3600))
        assert await s.delete_old(time.time()) == 0
    finally:
        await s.close()


async def test_sqlite_retention_deletes_every_old_record_in_batches(tmp_path: Path):
    from speko_bridge.store.sqlite import DELETE_BATCH

    s = SQLiteStore(tmp_path / "ret.db", retention_seconds=3600)
    await s.open()
    try:
        old = time.time() - 3 * 24 * 3600
        await asyncio.gather(*(s.create(make_record(f"sess_{i}", f"jti_{i}", created=old))
                               for i in range(DELETE_BATCH + 1)))
        assert await s.delete_old(time.time()) == DELETE_BATCH + 1  # two batches, counted whole
        assert await s.get("sess_0") is None and await s.get(f"sess_{DELETE_BATCH}") is None
    finally:
        await s.close()


async def test_sqlite_creates_its_directory_owner_only(tmp_path: Path):
    s = SQLiteStore(tmp_path / "fresh" / "nested" / "s.db")
    await s.open()
    try:
        assert (tmp_path / "fresh" / "nested").stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "fresh" / "nested" / "s.db").stat().st_mode & 0o777 == 0o600
    finally:
        await s.close()
