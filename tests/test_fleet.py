"""Two bridge processes sharing one real Redis: tokens open anywhere exactly once, a revoke
reaches the replica holding the socket, limits hold across the fleet, SIGTERM drains, and
a Redis outage refuses mints without cutting live sessions."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from .conftest import API_KEY, OTHER_KEY, SIGNING_KEY, auth
from .fleet import fleet
from .redis_server import RedisServer
from .wsclient import (
    Received,
    assert_clean_close,
    closed,
    expect_refusal,
    mint,
    read,
    record,
    tone,
    wait_record,
)


@pytest.fixture
async def sim(openai_sims):
    return await openai_sims(reply_ms=600)


@pytest.fixture
async def replicas(tmp_path, redis_server, sim):
    async with fleet(tmp_path, redis_server.url, sim.url) as pair:
        yield pair


async def turn(ws) -> Received:
    await ws.send_bytes(tone(0.3, 24000))
    await ws.send_str('{"type":"commit"}')
    return await read(ws, Received(), lambda r: r.of("usage"))


async def test_token_minted_on_a_opens_on_b_and_either_reads_the_record(http, replicas):
    a, b = replicas
    created = await mint(http, a)
    async with http.ws_connect(b.ws_url, protocols=[created["token"]]) as ws:
        got = await turn(ws)
        assert got.audio and got.of("usage")[0]["outputAudioTokens"] > 0
        assert (await record(http, a, created["sessionId"]))["status"] == "active"
    rec = await wait_record(http, a, created["sessionId"], "ended")
    assert (rec["status"], rec["closeCode"]) == ("ended", 1000)
    assert rec["usage"]["outputAudioTokens"] == got.of("usage")[0]["outputAudioTokens"]


async def _race(http, a, b, token: str) -> list[int | None]:
    """Offer one token to A and B at the same moment; the close code each socket got
    (None: still open, i.e. it won), then close the winner."""
    sockets = await asyncio.gather(*(http.ws_connect(r.ws_url, protocols=[token]) for r in (a, b)))
    reads = [asyncio.create_task(read(ws, Received(), closed, timeout=10)) for ws in sockets]
    _, pending = await asyncio.wait(reads, return_when=asyncio.FIRST_COMPLETED, timeout=10)
    await asyncio.wait(pending, timeout=0.3)  # would the other be refused too?
    codes = []
    for ws, task in zip(sockets, reads):
        if task.done():
            got = task.result()
            assert got.of("error")[0]["code"] == "token_used"
            codes.append(got.close_code)
        else:
            task.cancel()
            codes.append(None)
        await ws.close()
    return codes


async def test_one_token_offered_to_both_replicas_opens_exactly_once_200_times(http, replicas):
    a, b = replicas
    tokens = [await mint(http, a if i % 2 else b) for i in range(200)]
    limit = asyncio.Semaphore(20)

    async def one(created):
        async with limit:
            return await _race(http, a, b, created["token"])

    outcomes = await asyncio.gather(*(one(c) for c in tokens))
    for codes in outcomes:
        assert sorted(codes, key=str) == sorted([None, 4001], key=str), codes
    winners = [codes.index(None) for codes in outcomes]
    assert 0 < winners.count(0) < 200, "both replicas should win some races"


async def test_revoke_on_a_closes_the_socket_on_b_within_a_second(http, replicas):
    a, b = replicas
    created = await mint(http, a)
    async with http.ws_connect(b.ws_url, protocols=[created["token"]]) as ws:
        await turn(ws)  # the session is live on B
        started = time.monotonic()
        async with http.delete(f"{a.base}/v1/sessions/{created['sessionId']}", headers=auth()) as r:
            assert r.status == 200 and (await r.json())["status"] == "revoked"
        got = await read(ws, Received(), closed, timeout=5)
        elapsed = time.monotonic() - started
    assert got.of("error")[0]["code"] == "session_revoked"
    assert_clean_close(got, 4004)
    assert elapsed < 1.0, elapsed
    rec = await wait_record(http, b, created["sessionId"], "revoked")
    assert rec["closeCode"] == 4004


async def test_limits_hold_across_both_replicas(http, tmp_path, redis_server, sim):
    env = {"SPEKO_MINT_RATE_PER_MINUTE": "6", "SPEKO_MINT_BURST": "4", "SPEKO_MAX_SESSIONS_PER_KEY": "2"}
    async with fleet(tmp_path, redis_server.url, sim.url, **env) as (a, b):
        tokens = [await mint(http, a if i % 2 else b) for i in range(4)]
        for replica in (a, b):  # the allowance is the key's, whichever replica is asked
            async with http.post(f"{replica.base}/v1/sessions", headers=auth(),
                                 json={"provider": "openai", "model": "gpt-realtime"}) as r:
                assert r.status == 429
                assert (await r.json())["error"]["code"] == "rate_limited"
                assert 1 <= int(r.headers["Retry-After"]) <= 10
        async with http.post(f"{a.base}/v1/sessions", headers=auth(OTHER_KEY),
                             json={"provider": "openai", "model": "gpt-realtime"}) as r:
            assert r.status == 201  # another key has its own allowance

        first = await http.ws_connect(a.ws_url, protocols=[tokens[0]["token"]])
        second = await http.ws_connect(b.ws_url, protocols=[tokens[1]["token"]])
        await turn(first)
        await turn(second)
        # a third concurrent session of the same key, on either replica: 4029
        await expect_refusal(a.ws_url, [tokens[2]["token"]], 4029, "rate_limited")
        await expect_refusal(b.ws_url, [tokens[2]["token"]], 4029, "rate_limited")
        await first.close()
        await wait_record(http, a, tokens[0]["sessionId"], "ended")
        # the refused token was not burnt: it opens now that a slot is free
        async with http.ws_connect(b.ws_url, protocols=[tokens[2]["token"]]) as third:
            assert (await turn(third)).of("usage")
        await second.close()


async def test_sigterm_mid_turn_drains_with_1001_and_a_complete_record(http, tmp_path, redis_server, openai_sims):
    slow = await openai_sims(reply_ms=20_000)
    async with fleet(tmp_path, redis_server.url, slow.url, SPEKO_DRAIN_SECONDS="2") as (a, b):
        created = await mint(http, a)
        later = await mint(http, a)
        async with http.ws_connect(a.ws_url, protocols=[created["token"]]) as ws:
            await ws.send_bytes(tone(0.3, 24000))
            await ws.send_str('{"type":"commit"}')
            got = await read(ws, Received(), lambda r: len(r.audio) > 24000)  # the answer is playing
            sent_at = time.monotonic()
            a.terminate()
            # readiness drops first, new sockets are refused without burning the token
            async with asyncio.timeout(1):
                while True:
                    async with http.get(f"{a.base}/readyz") as r:
                        if r.status == 503:
                            assert (await r.json())["status"] == "draining"
                            break
                    await asyncio.sleep(0.02)
            await expect_refusal(a.ws_url, [later["token"]], 1001, "internal_error")
            await read(ws, got, closed, timeout=10)
            closed_after = time.monotonic() - sent_at
        assert_clean_close(got, 1001)
        assert 1.5 < closed_after < 4, closed_after  # the 2 s drain window, then 1001
        assert await a.wait(10) == 0
        rec = await record(http, b, created["sessionId"])
        assert (rec["status"], rec["closeCode"], rec["closeReason"]) == ("ended", 1001, "server shutting down")
        assert rec["startedAt"] and rec["endedAt"]
        async with http.ws_connect(b.ws_url, protocols=[later["token"]]) as ws2:
            assert ws2.protocol == later["token"]
            await ws2.send_str('{"type":"interrupt"}')


async def test_redis_stopped_mid_run_refuses_mints_and_keeps_live_sessions(http, tmp_path, sim):
    redis = RedisServer(tmp_path / "redis").start()
    try:
        async with fleet(tmp_path, redis.url, sim.url, n=1) as (a,):
            created = await mint(http, a)
            async with http.ws_connect(a.ws_url, protocols=[created["token"]]) as ws:
                await turn(ws)
                redis.stop()
                async with http.post(f"{a.base}/v1/sessions", headers=auth(),
                                     json={"provider": "openai", "model": "gpt-realtime"}) as r:
                    body = await r.json()
                    assert r.status == 503 and body["error"]["code"] == "store_unavailable"
                    assert "token" not in json.dumps(body)
                async with http.get(f"{a.base}/readyz") as r:
                    assert r.status == 503
                for _ in range(2):  # the live session keeps talking
                    got = await turn(ws)
                    assert len(got.audio) > 24000 and got.of("usage")
            redis.start()
            again = await mint(http, a)  # and minting recovers with Redis
            async with http.ws_connect(a.ws_url, protocols=[again["token"]]) as ws:
                assert (await turn(ws)).of("usage")
            logs = a.logs()
    finally:
        redis.stop()
    entries = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(e["message"].startswith("mint refused, store unavailable") for e in entries)
    for secret in (API_KEY, SIGNING_KEY, created["token"], again["token"], "sk-sim"):
        assert secret not in logs
