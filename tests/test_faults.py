"""Faults of the providers and of the bridge's own parts, over real sockets: each ends the
session with the mapped ``error`` and ``close`` within a documented bound, and the session
record is ended with the usage reached so far. Bounds (README "Faults"): a broken or
garbled provider connection ends the session at once; a stalled provider after
``SPEKO_UPSTREAM_READ_TIMEOUT`` (+ at most 1 s); a handshake that never answers after
``SPEKO_UPSTREAM_CONNECT_TIMEOUT``; a client that stops reading after
``SPEKO_CLIENT_SEND_TIMEOUT`` (+ the 2 s close handshake, then the TCP connection is
aborted)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from speko_bridge.session.outbox import OUTBOX_MAX_ITEMS as OUTBOX_MAX

from .conftest import SIGNING_KEY, run_bridge
from .wsclient import (
    RawClient,
    Received,
    assert_clean_close,
    closed,
    mint,
    read,
    tone,
    wait_record,
)

READ_TIMEOUT = 1.0


@pytest.fixture
async def sim(openai_sims):
    return await openai_sims(reply_ms=600, fail_on_response=2)


def fault_env(env: dict, sim_url: str, **extra) -> dict:
    return {**env, "SPEKO_OPENAI_URL": sim_url, "OPENAI_API_KEY": "sk-sim",
            "SPEKO_UPSTREAM_READ_TIMEOUT": str(READ_TIMEOUT), **extra}


@pytest.fixture
async def bridge(env, sim):
    async with run_bridge(fault_env(env, sim.url)) as server:
        yield server


async def turn(ws) -> Received:
    await ws.send_bytes(tone(0.2, 24000))
    await ws.send_str('{"type":"commit"}')
    return await read(ws, Received(), lambda r: r.of("usage") or closed(r))


def sample(bridge, name: str, **labels) -> float:
    return bridge.app.state.metrics.registry.get_sample_value(name, labels) or 0.0


# --------------------------------------------------------------------------- mid-answer

MID_ANSWER = [
    # fault, extra sim config, error code, bound in seconds from the commit
    ("drop_mid_response", {}, "provider_unavailable", 1.0),
    ("stall_mid_response", {}, "provider_unavailable", READ_TIMEOUT + 1.5),
    ("error_mid_response", {}, "provider_unavailable", 1.0),
    ("close_mid_response", {"fail_close_code": 1000}, "provider_unavailable", 1.0),
    ("close_mid_response", {"fail_close_code": 1001}, "provider_unavailable", 1.0),
    ("close_mid_response", {"fail_close_code": 1008}, "provider_unavailable", 1.0),
    ("close_mid_response", {"fail_close_code": 1011}, "provider_unavailable", 1.0),
    ("close_mid_response", {"fail_close_code": 4000}, "provider_unavailable", 1.0),
    ("garbage_mid_response", {}, "provider_error", 1.0),
    ("oversized_mid_response", {}, "provider_unavailable", 2.0),
]


@pytest.mark.parametrize("fault,extra,error,bound", MID_ANSWER,
                         ids=[f"{f}-{e.get('fail_close_code', '')}" for f, e, _, _ in MID_ANSWER])
async def test_provider_fault_mid_answer_ends_with_4500_and_keeps_the_usage_so_far(
        http, bridge, sim, fault, extra, error, bound):
    sim.config.fail = fault
    for key, value in extra.items():
        setattr(sim.config, key, value)
    created = await mint(http, bridge)
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        first = await turn(ws)  # the first answer is whole
        assert first.of("usage") and not closed(first)
        started = time.monotonic()
        got = await turn(ws)
        if not closed(got):
            got = await read(ws, got, closed, timeout=bound + 5)
        elapsed = time.monotonic() - started
    assert got.of("error")[-1]["code"] == error, got.of("error")
    assert_clean_close(got, 4500)
    assert elapsed < bound, f"{fault}: closed after {elapsed:.2f} s, bound {bound} s"
    rec = await wait_record(http, bridge, created["sessionId"], "ended")
    assert rec["closeCode"] == 4500
    assert rec["usage"]["outputAudioTokens"] == first.of("usage")[0]["outputAudioTokens"] > 0


async def test_one_unreadable_provider_message_is_skipped_and_counted(http, bridge, sim):
    sim.config.fail = "invalid_json_mid_response"
    created = await mint(http, bridge)
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        await turn(ws)
        got = await turn(ws)  # the garbled event comes in the middle of this answer
        assert got.of("usage") and not got.of("error")
        assert got.text("assistant")[1] == ["You spoke for 0.2 seconds."]
    assert sample(bridge, "speko_upstream_malformed_total", provider="openai") == 1


@pytest.mark.parametrize("provider", ["openai", "google", "xai"])
async def test_a_stalled_provider_is_closed_after_the_read_timeout(http, env, provider):
    from .test_conformance import provider_env, start_simulator

    sim = await start_simulator(provider, fail="stall_mid_response")
    try:
        async with run_bridge({**provider_env(env, provider, sim.url),
                               "SPEKO_UPSTREAM_READ_TIMEOUT": str(READ_TIMEOUT)}) as b:
            created = await mint(http, b, provider)
            async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
                started = time.monotonic()
                got = await turn(ws)
                got = await read(ws, got, closed, timeout=READ_TIMEOUT + 5)
                elapsed = time.monotonic() - started
            assert got.audio, "the stall came after the first audio"
            assert got.of("error")[-1]["code"] == "provider_unavailable"
            assert_clean_close(got, 4500)
            assert READ_TIMEOUT <= elapsed < READ_TIMEOUT + 1.5
    finally:
        await sim.stop()


async def test_silence_while_no_reply_is_due_is_not_a_stall(http, bridge, sim):
    created = await mint(http, bridge)
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        await turn(ws)
        await asyncio.sleep(READ_TIMEOUT * 2.5)  # the user thinks; the provider owes nothing
        assert len(bridge.app.state.registry) == 1
        again = await turn(ws)
    assert again.of("usage") and not closed(again)


async def test_a_provider_error_then_silence_is_not_a_stall(http, env, openai_sims):
    # The provider refuses the turn with an error event and sends nothing more; the client
    # sends nothing more either. No reply is due: the session stays open past the read
    # timeout, and the next turn is answered.
    sim = await openai_sims(reply_ms=300, refuse_responses=True)
    read_timeout = 0.4
    async with run_bridge(fault_env(env, sim.url, SPEKO_UPSTREAM_READ_TIMEOUT=str(read_timeout))) as b:
        created = await mint(http, b)
        async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
            await ws.send_bytes(tone(0.2, 24000))
            await ws.send_str('{"type":"commit"}')
            got = await read(ws, Received(), lambda r: r.of("error") or closed(r))
            assert got.of("error")[0]["code"] == "provider_error" and not closed(got)
            with pytest.raises(TimeoutError):  # silence, well past the read timeout
                await read(ws, got, closed, timeout=read_timeout * 3)
            assert got.of("close") == [] and len(b.app.state.registry) == 1
            sim.config.refuse_responses = False
            again = await turn(ws)
        assert again.of("usage") and not closed(again), again.frames[-3:]
        assert again.text("assistant")[1] == ["You spoke for 0.2 seconds."]
        rec = await wait_record(http, b, created["sessionId"], "ended")
        assert rec["closeCode"] == 1000


# --------------------------------------------------------------------------- handshake

HANDSHAKE = [
    ({"refuse_status": 401}, 4502, "provider_auth_failed"),
    ({"refuse_status": 403}, 4502, "provider_auth_failed"),
    ({"refuse_status": 429}, 4502, "provider_error"),
    ({"refuse_status": 500}, 4500, "provider_unavailable"),
    ({"refuse_status": 503}, 4500, "provider_unavailable"),
    ({"stall_handshake": True}, 4500, "provider_unavailable"),
]


@pytest.mark.parametrize("config,code,error", HANDSHAKE, ids=[str(c) for c, _, _ in HANDSHAKE])
async def test_provider_refusing_the_handshake(http, env, openai_sims, config, code, error):
    sim = await openai_sims(**config)
    async with run_bridge(fault_env(env, sim.url, SPEKO_UPSTREAM_CONNECT_TIMEOUT="1")) as b:
        created = await mint(http, b)
        async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
            await ws.send_bytes(tone(0.2, 24000))  # held while the bridge connects
            started = time.monotonic()
            got = await read(ws, Received(), closed, timeout=5)
            elapsed = time.monotonic() - started
        assert [e["code"] for e in got.of("error")] == [error]
        assert_clean_close(got, code)
        assert elapsed < 1.5  # the connect timeout (1 s) bounds the stalled handshake
        rec = await wait_record(http, b, created["sessionId"], "ended")
        assert rec["closeCode"] == code and rec["usage"]["outputAudioTokens"] == 0
    assert sim.handshakes == 1 and sim.connections == 0


# --------------------------------------------------------------------------- own faults


async def test_a_client_that_stops_reading_is_closed_with_4009_and_memory_stays_bounded(
        http, env, openai_sims):
    sim = await openai_sims(reply_ms=120_000)  # two minutes of audio, sent as fast as TCP allows
    async with run_bridge(fault_env(env, sim.url, SPEKO_CLIENT_SEND_TIMEOUT="1")) as b:
        created = await mint(http, b)
        client = await RawClient.connect(b.port, "/v1/realtime", [created["token"]])
        try:
            client.send(tone(0.2, 24000))
            client.send('{"type":"commit"}')  # and never read again
            session = None
            peak = 0
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                live = b.app.state.registry.sessions()
                if live:
                    session = live[0]
                    peak = max(peak, len(session.outbox))
                elif session is not None:
                    break
                await asyncio.sleep(0.05)
            assert session is not None and not b.app.state.registry.sessions()
            assert session.outcome.code == 4009 and "not reading" in session.outcome.message
            assert 0 < peak <= OUTBOX_MAX
            rec = await wait_record(http, b, created["sessionId"], "ended")
            assert rec["closeCode"] == 4009
            # the TCP connection is gone (aborted after the close handshake could not finish)
            await asyncio.wait_for(client.read_to_end(), 5)
        finally:
            client.close()


async def test_record_is_written_when_the_store_returns(http, env, redis_server, sim):
    env = fault_env(env, sim.url, SPEKO_REDIS_URL=redis_server.url, SPEKO_REDIS_PREFIX="faults-a:")
    async with run_bridge(env) as b:
        created = await mint(http, b)
        async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
            first = await turn(ws)
            redis_server.stop()
        # the session ended while the store was down; the record write is being retried
        await asyncio.sleep(1.0)
        assert sample(b, "speko_record_writes_failed_total", outcome="retried") >= 1
        redis_server.start()
        rec = await wait_record(http, b, created["sessionId"], "ended", timeout=10)
        assert rec["closeCode"] == 1000
        assert rec["usage"]["outputAudioTokens"] == first.of("usage")[0]["outputAudioTokens"] > 0
        assert sample(b, "speko_record_writes_failed_total", outcome="lost") == 0


async def test_a_record_that_cannot_be_written_is_logged_and_counted(
        http, env, redis_server, sim, caplog):
    env = fault_env(env, sim.url, SPEKO_REDIS_URL=redis_server.url, SPEKO_REDIS_PREFIX="faults-b:",
                    SPEKO_RECORD_RETRY_SECONDS="0.5")
    try:
        async with run_bridge(env) as b:
            created = await mint(http, b)
            with caplog.at_level(logging.WARNING, logger="speko_bridge"):
                async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
                    await turn(ws)
                    redis_server.stop()
                deadline = time.monotonic() + 5
                while not sample(b, "speko_record_writes_failed_total", outcome="lost"):
                    assert time.monotonic() < deadline, "a lost record was not counted"
                    await asyncio.sleep(0.05)
            lost = [r for r in caplog.records if "gave up" in r.getMessage()]
            assert lost and lost[0].levelno == logging.ERROR
            assert lost[0].session_id == created["sessionId"]
    finally:
        if redis_server.proc is None:
            redis_server.start()
    assert SIGNING_KEY not in caplog.text
