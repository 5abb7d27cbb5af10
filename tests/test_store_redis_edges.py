"""Redis store edges an operator of a fleet would hit: how long records are kept, the
sweeper past one batch, leases that must not come back, a Redis that stops answering, a
revocation channel that survives an outage (and says so once), connections given back on
close. Real redis-server processes throughout. Found by ``make mutants`` (docs/testing.md)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time

import pytest

from speko_bridge.params import SessionParams
from speko_bridge.store import SessionRecord, StoreUnavailable, UsageTotals
from speko_bridge.store.redis import RECORD_GRACE_SECONDS, SWEEP_BATCH, RedisStore

from .redis_server import RedisServer


def make_record(session_id: str, *, created: float, window: float = 60.0, status: str = "pending",
                ttl: int = 900, **extra) -> SessionRecord:
    params = SessionParams(provider="openai", model="gpt-realtime", ttl_seconds=ttl)
    return SessionRecord(
        session_id=session_id, owner="key_a", provider="openai", model="gpt-realtime",
        status=status, params=params, jti=f"jti_{session_id}", created_at=created,
        token_expires_at=created + window, ttl_seconds=ttl, **extra,
    )


@pytest.fixture
async def store(redis_server, tmp_path):
    s = RedisStore(redis_server.url, prefix=f"redge:{tmp_path.name}:", retention_seconds=86400)
    await s.open()
    yield s
    await s.close()


async def test_a_record_is_kept_for_window_plus_ttl_plus_grace_plus_retention(store):
    """Nobody may find their session gone while it can still run or be looked at: the key
    lives for the token window, the session ttl, an hour's grace and the retention."""
    now = time.time()
    for sid, window in (("s_window", 60.0), ("s_no_window", 0.0)):
        await store.create(make_record(sid, created=now, window=window, ttl=900))
        expected_ms = (int(window) + 900 + RECORD_GRACE_SECONDS + 86400) * 1000
        pttl = await store.redis.pttl(f"{store.prefix}s:{sid}")
        assert expected_ms - 2000 < pttl <= expected_ms


async def test_a_record_written_in_any_state_reads_back_unchanged(store):
    """A record is stored whole, usage and close details included, and a non-pending one
    is left alone by the sweeper."""
    now = time.time()
    rec = make_record("s_done", created=now - 600, status="ended", started_at=now - 590,
                      ended_at=now - 500, close_code=1000, close_reason="bye",
                      usage=UsageTotals(12, 34))
    await store.create(rec)
    assert await store.get("s_done") == rec
    assert await store.expire_stale(now + 10**6) == 0
    assert await store.get("s_done") == rec


async def test_the_sweeper_expires_more_than_one_batch(store):
    now = time.time()
    count = SWEEP_BATCH + 1
    await asyncio.gather(*(store.create(make_record(f"s{i}", created=now - 120)) for i in range(count)))
    assert await store.expire_stale(now) == count
    assert (await store.get(f"s{count - 1}")).status == "expired"
    assert await store.expire_stale(now) == 0


async def test_a_mint_wait_is_reported_to_the_millisecond(store):
    assert await store.take_mint("key_a", 120, 1, 5000.0) == 0
    assert await store.take_mint("key_a", 120, 1, 5000.0) == pytest.approx(0.5, abs=1e-6)


async def test_renewing_a_released_slot_does_not_bring_it_back(store):
    now = time.time()
    assert await store.acquire_slot("key_a", "s1", 1, now)
    await store.release_slot("key_a", "s1")
    await store.renew_slots([("key_a", "s1")], now + 1)  # a renewal racing the release
    assert await store.acquire_slot("key_a", "s2", 1, now + 2)


def _connected_clients(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"INFO clients\r\n")
        data = b""
        while b"connected_clients:" not in data or not data.endswith(b"\r\n"):
            data += s.recv(4096)
    line = next(x for x in data.split(b"\r\n") if x.startswith(b"connected_clients:"))
    return int(line.split(b":")[1]) - 1  # minus this connection


async def test_close_gives_every_connection_back(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    try:
        s = RedisStore(server.url)
        await s.open()
        await asyncio.gather(*(s.get(f"s{i}") for i in range(8)))  # several pooled connections
        assert _connected_clients(server.port) >= 1
        await s.close()
        deadline = time.monotonic() + 2
        while _connected_clients(server.port) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert _connected_clients(server.port) == 0
    finally:
        server.stop()


async def test_a_redis_that_stops_answering_is_unavailable_within_the_socket_timeout(tmp_path):
    """Not down (connections are accepted) but frozen, as under a long fork or swap: calls
    must fail after ``socket_timeout`` with a message that names Redis, not hang."""
    server = RedisServer(tmp_path / "redis").start()
    s = RedisStore(server.url, socket_timeout=0.5)
    await s.open()
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as err:
            await asyncio.wait_for(s.get("s1"), 10)
        assert time.monotonic() - started < 3
        assert str(err.value).startswith("redis: ")
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        await s.close()
        server.stop()


async def test_revocations_still_arrive_after_a_long_outage_and_it_is_logged_once(tmp_path, caplog):
    """A replica's watcher outlives a Redis outage longer than its whole backoff ladder
    (0.1, 0.5, 1, 2 s, then 2 s forever), says so in one warning, and hears the next revoke."""
    server = RedisServer(tmp_path / "redis").start()
    # `a` (the replica that revokes) connects after the outage: the first call on a pooled
    # connection that Redis dropped fails once (see docs/testing.md), not our subject here
    a, b = RedisStore(server.url, socket_timeout=0.5), RedisStore(server.url, socket_timeout=0.5)
    await b.open()
    heard: asyncio.Queue[str] = asyncio.Queue()
    caplog.set_level(logging.WARNING, logger="speko_bridge")
    watcher = asyncio.create_task(b.watch_revocations(heard.put_nowait))
    try:
        await asyncio.sleep(0.2)
        server.stop()
        await asyncio.sleep(4.5)  # five failed attempts: past the end of the backoff ladder
        server.start()
        await a.open()
        now = time.time()
        await a.create(make_record("s_live", created=now))
        await a.consume("s_live", "jti_s_live", now)
        deadline = time.monotonic() + 6
        while True:  # the watcher resubscribes within its 2 s step; revokes after that arrive
            await a.revoke("s_live", "key_a", time.time())
            try:
                assert await asyncio.wait_for(heard.get(), 0.5) == "s_live"
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "the watcher never came back"
                assert not watcher.done(), watcher.exception()
                # revoke again: the first one may have been published before resubscribing
                await a.finish("s_live", status="ended", close_code=1000, close_reason="",
                               usage=UsageTotals(), now=time.time())
                await a.create(make_record("s_live", created=time.time()))
                await a.consume("s_live", "jti_s_live", time.time())
        lost = [r.getMessage() for r in caplog.records if "revocation channel lost" in r.getMessage()]
        assert len(lost) == 1, lost
        assert lost[0].startswith("revocation channel lost, resubscribing: ")
        detail = lost[0].removeprefix("revocation channel lost, resubscribing: ")
        assert detail and detail != "None" and "%s" not in detail
    finally:
        watcher.cancel()
        await a.close()
        await b.close()
        server.stop()

