"""Resuming after a dropped connection (docs/protocol.md, v2), through the real bridge and the
simulators: the client's TCP connection is cut with no close frame (``RawClient.close``
aborts it), and a new socket offers the same token within the grace window."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from speko_bridge.simulator.google import GoogleSimConfig, GoogleSimulator
from speko_bridge.simulator.xai import XAISimConfig, XAISimulator

from .conftest import auth, run_bridge
from .wsclient import (
    RawClient,
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

#: A reply long enough to be cut in the middle: 20 s, sent at about real time (50 ms
#: deltas every 50 ms) so most of it is still to come when the client drops.
LONG_REPLY_MS = 20_000


async def _simulator(kind: str):
    if kind == "google":
        sim = GoogleSimulator(GoogleSimConfig(api_key="sk-sim", reply_ms=LONG_REPLY_MS, delta_interval=0.05))
    elif kind == "xai":
        sim = XAISimulator(XAISimConfig(api_key="sk-sim", reply_ms=LONG_REPLY_MS, delta_interval=0.05))
    else:
        from speko_bridge.simulator.openai import OpenAISimConfig, OpenAISimulator

        sim = OpenAISimulator(OpenAISimConfig(api_key="sk-sim", reply_ms=LONG_REPLY_MS, delta_interval=0.05))
    await sim.start("127.0.0.1", 0)
    return sim


def _provider_env(kind: str, sim) -> dict[str, str]:
    name = kind.upper()
    return {f"SPEKO_{name}_URL": sim.url, f"{name}_API_KEY": "sk-sim"}


@pytest.fixture(params=["openai", "google", "xai"])
async def provider(request):
    sim = await _simulator(request.param)
    yield request.param, sim
    await sim.stop()


async def drop_mid_answer(bridge, token: str) -> tuple[Received, RawClient]:
    """Open a raw socket, speak, commit, read some of the answer, then cut the TCP
    connection (no close frame)."""
    client = await RawClient.connect(bridge.port, "/v1/realtime", [token], rcvbuf=1 << 16)
    client.send(tone(0.3, 24000))
    client.send('{"type":"commit"}')
    got = await client.read(Received(), lambda r: len(r.audio) >= 24000 * 2 * 0.3)
    client.close()
    return got, client


async def resume(bridge, token: str) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(bridge.ws_url, protocols=[token])
    return http, ws


async def metric(http, bridge, name: str) -> float:
    async with http.get(f"{bridge.base}/metrics") as r:
        text = await r.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


async def test_dropped_mid_answer_resumes_on_the_same_provider_connection(http, env, provider):
    kind, sim = provider
    async with run_bridge({**env, **_provider_env(kind, sim)}) as bridge:
        created = await mint(http, bridge, kind)
        sid, token = created["sessionId"], created["token"]
        heard, _ = await drop_mid_answer(bridge, token)
        await asyncio.sleep(0.5)  # the reply goes on upstream while nobody listens
        rec = await record(http, bridge, sid)
        assert rec["status"] == "active" and rec["closeCode"] is None  # waiting, not ended
        waiting = bridge.app.state.registry.get(sid)
        assert waiting.phase.value == "client_away"
        assert len(waiting.outbox) == 0  # nothing is kept for the absent client

        client_http, ws = await resume(bridge, token)
        try:
            got = await read(ws, Received(), lambda r: r.frames)
            assert got.frames[0] == {"type": "resumed", "sessionId": sid}
            # nothing of the cut reply is replayed: the next things heard belong to the next turn
            await ws.send_bytes(tone(0.3, 24000))
            await ws.send_str('{"type":"commit"}')
            await read(ws, got, lambda r: len(r.audio) >= 24000 * 2 * 0.5, timeout=15)
            await ws.send_str('{"type":"interrupt"}')
            await read(ws, got, lambda r: r.of("usage"), timeout=15)
            await ws.close()
        finally:
            await client_http.close()
        assert sim.connections == 1  # the provider connection is the one the first socket opened
        rec = await wait_record(http, bridge, sid, "ended")
        assert (rec["closeCode"], rec["sessionId"]) == (1000, sid)
        # totals continue: the cut response's usage was counted while the client was away
        usage = got.of("usage")[-1]
        assert rec["usage"]["outputAudioTokens"] > usage["outputAudioTokens"] > 0
        assert rec["usage"]["inputAudioTokens"] > usage["inputAudioTokens"]
        assert await metric(http, bridge, "speko_resumes_succeeded_total") == 1
    assert len(heard.audio) > 0
    if kind != "google":
        # the cut response was cancelled and truncated at (at most) what had been sent
        events = sim.received[0]
        kinds = [e["type"] for e in events]
        assert "response.cancel" in kinds
        if kind == "openai":
            truncate = next(e for e in events if e["type"] == "conversation.item.truncate")
            assert 0 < truncate["audio_end_ms"] < LONG_REPLY_MS / 2


@pytest.fixture
async def openai_sim(openai_sims):
    return await openai_sims(reply_ms=LONG_REPLY_MS, delta_interval=0.05)


def _openai(env, sim, **more) -> dict[str, str]:
    return {**env, "SPEKO_OPENAI_URL": sim.url, "OPENAI_API_KEY": "sk-sim", **more}


async def test_after_the_window_the_session_ends_client_gone_and_resume_is_refused(http, env, openai_sim):
    async with run_bridge(_openai(env, openai_sim, SPEKO_RESUME_SECONDS="0.5")) as bridge:
        created = await mint(http, bridge)
        await drop_mid_answer(bridge, created["token"])
        rec = await wait_record(http, bridge, created["sessionId"], "ended")
        assert (rec["closeCode"], rec["closeReason"].split(":")[0]) == (1006, "client_gone")
        await expect_refusal(bridge.ws_url, [created["token"]], 4001, "token_used")
        assert await metric(http, bridge, "speko_sessions_ended_in_grace_total") == 1
        # the upstream was closed at the end of the window (the simulator saw its close)
        assert openai_sim.open_sockets == 0
    assert openai_sim.connections == 1


async def test_two_concurrent_resumes_one_wins(http, env, openai_sim):
    async with run_bridge(_openai(env, openai_sim)) as bridge:
        created = await mint(http, bridge)
        sid, token = created["sessionId"], created["token"]
        await drop_mid_answer(bridge, token)
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as a, aiohttp.ClientSession() as b:
            ws_a, ws_b = await asyncio.gather(a.ws_connect(bridge.ws_url, protocols=[token]),
                                              b.ws_connect(bridge.ws_url, protocols=[token]))
            got_a, got_b = await asyncio.gather(read(ws_a, Received(), lambda r: r.frames),
                                                read(ws_b, Received(), lambda r: r.frames))
            first = sorted(g.frames[0]["type"] for g in (got_a, got_b))
            assert first == ["error", "resumed"], (got_a.frames, got_b.frames)
            loser_ws, loser = (ws_a, got_a) if got_a.frames[0]["type"] == "error" else (ws_b, got_b)
            assert loser.frames[0]["code"] == "token_used"
            await read(loser_ws, loser, closed)
            assert_clean_close(loser, 4001)
            winner_ws = ws_b if loser_ws is ws_a else ws_a
            await winner_ws.send_bytes(tone(0.2, 24000))
            await winner_ws.send_str('{"type":"commit"}')
            await read(winner_ws, Received(), lambda r: len(r.audio) > 0)  # the winner's session goes on
            # a third socket while the winner is connected: one live socket per session
            await expect_refusal(bridge.ws_url, [token], 4001, "token_used")
            await winner_ws.close()
        rec = await wait_record(http, bridge, sid, "ended")
        assert rec["closeCode"] == 1000
        assert await metric(http, bridge, "speko_resumes_refused_total") == 2
        assert await metric(http, bridge, "speko_resumes_attempted_total") == 3


async def test_revoking_during_the_window_ends_the_session(http, env, openai_sim):
    async with run_bridge(_openai(env, openai_sim)) as bridge:
        created = await mint(http, bridge)
        sid, token = created["sessionId"], created["token"]
        await drop_mid_answer(bridge, token)
        await asyncio.sleep(0.2)
        async with http.delete(f"{bridge.base}/v1/sessions/{sid}", headers=auth()) as r:
            assert r.status == 200
        rec = await wait_record(http, bridge, sid, "revoked")
        assert rec["closeCode"] == 4004
        await expect_refusal(bridge.ws_url, [token], 4001, "session_revoked")


async def test_a_close_handshake_ends_the_session_at_once(http, env, openai_sim):
    async with run_bridge(_openai(env, openai_sim)) as bridge:
        created = await mint(http, bridge)
        async with http.ws_connect(bridge.ws_url, protocols=[created["token"]]) as ws:
            await ws.send_bytes(tone(0.2, 24000))
            await ws.send_str('{"type":"commit"}')
            await read(ws, Received(), lambda r: len(r.audio) > 0)
        rec = await wait_record(http, bridge, created["sessionId"], "ended")
        assert rec["closeCode"] == 1000
        await expect_refusal(bridge.ws_url, [created["token"]], 4001, "token_used")


async def test_a_window_of_zero_ends_a_dropped_session_at_once(http, env, openai_sim):
    async with run_bridge(_openai(env, openai_sim, SPEKO_RESUME_SECONDS="0")) as bridge:
        created = await mint(http, bridge)
        started = time.monotonic()
        await drop_mid_answer(bridge, created["token"])
        rec = await wait_record(http, bridge, created["sessionId"], "ended")
        assert rec["closeCode"] == 1006 and time.monotonic() - started < 3
        await expect_refusal(bridge.ws_url, [created["token"]], 4001, "token_used")


async def test_a_resume_is_accepted_after_the_tokens_opening_window(http, env, openai_sim):
    async with run_bridge(_openai(env, openai_sim, SPEKO_TOKEN_WINDOW_SECONDS="1")) as bridge:
        created = await mint(http, bridge)
        await drop_mid_answer(bridge, created["token"])
        await asyncio.sleep(1.3)  # the token's exp has passed; the session is live
        client_http, ws = await resume(bridge, created["token"])
        try:
            got = await read(ws, Received(), lambda r: r.frames)
            assert got.frames[0]["type"] == "resumed"
            await ws.close()
        finally:
            await client_http.close()


async def test_the_openai_compatible_endpoint_does_not_resume(http, env, openai_sim):
    """OpenAI's protocol has no ``resumed`` event and its SDKs do not reconnect: a dropped
    socket of ``/v1/openai/realtime`` ends its session as before (1006)."""
    async with run_bridge(_openai(env, openai_sim)) as bridge:
        created = await mint(http, bridge)
        client = await RawClient.connect(bridge.port, "/v1/openai/realtime",
                                         ["realtime", f"openai-insecure-api-key.{created['token']}"])
        await client.read(Received(), lambda r: r.frames)  # session.created
        client.close()
        rec = await wait_record(http, bridge, created["sessionId"], "ended")
        assert rec["closeCode"] == 1006
        # nor does the native endpoint take over a session of the other protocol
        await expect_refusal(bridge.ws_url, [created["token"]], 4001, "token_used")


async def test_resumed_socket_can_drop_and_resume_again(http, env, openai_sim):
    async with run_bridge(_openai(env, openai_sim)) as bridge:
        created = await mint(http, bridge)
        sid, token = created["sessionId"], created["token"]
        await drop_mid_answer(bridge, token)
        await asyncio.sleep(0.1)
        await drop_mid_answer_resumed(bridge, token, sid)
        await asyncio.sleep(0.1)
        client_http, ws = await resume(bridge, token)
        try:
            got = await read(ws, Received(), lambda r: r.frames)
            assert got.frames[0] == {"type": "resumed", "sessionId": sid}
            await ws.close()
        finally:
            await client_http.close()
        assert openai_sim.connections == 1
        assert await metric(http, bridge, "speko_resumes_succeeded_total") == 2


async def drop_mid_answer_resumed(bridge, token: str, sid: str) -> None:
    client = await RawClient.connect(bridge.port, "/v1/realtime", [token], rcvbuf=1 << 16)
    got = await client.read(Received(), lambda r: r.frames)
    assert got.frames[0] == {"type": "resumed", "sessionId": sid}
    client.send(tone(0.3, 24000))
    client.send('{"type":"commit"}')
    await client.read(got, lambda r: len(r.audio) >= 24000 * 2 * 0.2)
    client.close()


async def test_a_resume_on_another_replica_is_refused_session_elsewhere(http, tmp_path, redis_server, openai_sim):
    """Two bridge processes on one Redis: the replica that does not hold the session refuses
    a resume with ``session_elsewhere`` (the client mints anew), and the real session is
    left alone: its own replica still takes the resume."""
    from .fleet import fleet

    async with fleet(tmp_path, redis_server.url, openai_sim.url) as (a, b):
        created = await mint(http, a)
        sid, token = created["sessionId"], created["token"]
        await drop_mid_answer(a, token)
        await asyncio.sleep(0.3)  # the grace window reaches the store
        await expect_refusal(b.ws_url, [token], 4001, "session_elsewhere")
        assert await metric(http, b, 'speko_resumes_refused_total{reason="session_elsewhere"}') == 1
        client_http, ws = await resume(a, token)
        try:
            got = await read(ws, Received(), lambda r: r.frames)
            assert got.frames[0] == {"type": "resumed", "sessionId": sid}
            # while a socket is attached, the session is not in grace: b says token_used
            await expect_refusal(b.ws_url, [token], 4001, "token_used")
            await ws.close()
        finally:
            await client_http.close()
        rec = await wait_record(http, b, sid, "ended")
        assert rec["closeCode"] == 1000
    assert openai_sim.connections == 1


async def test_a_waiting_session_keeps_its_per_key_slot(http, env, openai_sim):
    """A session in its grace window still counts toward the API key's concurrent limit."""
    async with run_bridge(_openai(env, openai_sim, SPEKO_MAX_SESSIONS_PER_KEY="1")) as bridge:
        first, second = await mint(http, bridge), await mint(http, bridge)
        await drop_mid_answer(bridge, first["token"])
        await asyncio.sleep(0.2)
        await expect_refusal(bridge.ws_url, [second["token"]], 4029, "rate_limited")
        client_http, ws = await resume(bridge, first["token"])
        try:
            got = await read(ws, Received(), lambda r: r.frames)
            assert got.frames[0]["type"] == "resumed"
            await ws.close()
        finally:
            await client_http.close()
        await wait_record(http, bridge, first["sessionId"], "ended")
        async with http.ws_connect(bridge.ws_url, protocols=[second["token"]]) as ws:  # the slot is free again
            await ws.send_bytes(tone(0.2, 24000))
            await ws.send_str('{"type":"commit"}')
            await read(ws, Received(), lambda r: len(r.audio) > 0)


async def test_a_drain_ends_a_waiting_session_with_1001(http, env, openai_sim):
    from speko_bridge.app import drain

    async with run_bridge(_openai(env, openai_sim, SPEKO_DRAIN_SECONDS="0.2")) as bridge:
        created = await mint(http, bridge)
        await drop_mid_answer(bridge, created["token"])
        await asyncio.sleep(0.2)
        await drain(bridge.app)
        rec = await wait_record(http, bridge, created["sessionId"], "ended")
        assert rec["closeCode"] == 1001
        # a draining replica takes no resume: the client mints a new session elsewhere
        await expect_refusal(bridge.ws_url, [created["token"]], 1001, "internal_error")
