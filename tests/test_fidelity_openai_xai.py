"""Issue 19, OpenAI and xAI: through the real bridge against simulators that do what the
real services do (OpenAI: a bad key is an error event then close, an invalid voice is an
error and no session.updated; xAI: a response cancelled before audio is never done, partial
``.completed`` transcripts, truncation errors after a barge-in)."""

from __future__ import annotations

import time

import pytest

from speko_bridge.simulator.openai import OpenAISimConfig, OpenAISimulator
from speko_bridge.simulator.xai import XAISimConfig, XAISimulator

from .conftest import run_bridge
from .test_conformance import assert_transcripts_join
from .wsclient import (
    Received,
    assert_clean_close,
    closed,
    interrupt_mid_answer,
    mint,
    read,
    tone,
    wait_record,
)


@pytest.fixture
async def xai(env):
    sim = XAISimulator(XAISimConfig(api_key="xai-sim-key", reply_ms=600))
    await sim.start("127.0.0.1", 0)
    try:
        async with run_bridge({**env, "SPEKO_XAI_URL": sim.url, "XAI_API_KEY": "xai-sim-key"}) as bridge:
            yield bridge, sim
    finally:
        await sim.stop()


@pytest.fixture
async def openai(env):
    sim = OpenAISimulator(OpenAISimConfig(api_key="sk-sim", reply_ms=600))
    await sim.start("127.0.0.1", 0)
    try:
        # a short read timeout: a refusal must not be noticed by waiting it out
        async with run_bridge({**env, "SPEKO_OPENAI_URL": sim.url, "OPENAI_API_KEY": "sk-sim",
                               "SPEKO_UPSTREAM_READ_TIMEOUT": "5"}) as bridge:
            yield bridge, sim
    finally:
        await sim.stop()


async def test_openai_bad_key_is_error_then_close_by_default_and_4502(http, openai):
    bridge, sim = openai
    assert sim.config.bad_key == "error_close"  # what the real service does
    sim.config.api_key = "sk-other"
    created = await mint(http, bridge, "openai")
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        got = await read(ws, Received(), closed)
    assert got.of("error")[0]["code"] == "provider_auth_failed"
    assert "Incorrect API key" in got.of("error")[0]["message"]
    assert_clean_close(got, 4502)
    assert sim.handshakes == 1


async def test_openai_invalid_voice_is_an_immediate_4502_naming_the_cause(http, openai):
    bridge, _ = openai
    created = await mint(http, bridge, "openai", voice="Marvin")
    start = time.monotonic()
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        got = await read(ws, Received(), closed, timeout=10)
    assert time.monotonic() - start < 2  # not the read timeout
    (error,) = got.of("error")
    assert error["code"] == "provider_error" and "Marvin" in error["message"] and "voice" in error["message"]
    assert_clean_close(got, 4502)
    rec = await wait_record(http, bridge, created["sessionId"], "ended")
    assert rec["closeCode"] == 4502


async def test_xai_abandoned_response_does_not_hang_the_session(http, env):
    # pings every 0.2 s keep the bridge's 1 s read watchdog quiet, as the real pings do: a
    # hung response would never be noticed, only the fix gets the next reply
    sim = XAISimulator(XAISimConfig(api_key="xai-sim-key", reply_ms=600, ping_interval=0.2))
    await sim.start("127.0.0.1", 0)
    try:
        async with run_bridge({**env, "SPEKO_XAI_URL": sim.url, "XAI_API_KEY": "xai-sim-key",
                               "SPEKO_UPSTREAM_READ_TIMEOUT": "1"}) as bridge:
            await _abandon_and_go_on(http, bridge, sim)
    finally:
        await sim.stop()


async def _abandon_and_go_on(http, bridge, sim) -> None:
    sim.config.first_audio_delay = 0.5  # the model's latency: the user barges in before audio
    created = await mint(http, bridge, "xai")
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        await ws.send_bytes(tone(0.3, 24000))
        await ws.send_str('{"type":"commit"}')
        got = await read(ws, Received(), lambda r: any(f["role"] == "user" and f["final"]
                                                      for f in r.of("transcript")))
        await ws.send_str('{"type":"interrupt"}')  # before any audio of the reply
        sim.config.first_audio_delay = 0.0
        await ws.send_bytes(tone(0.5, 24000))
        await ws.send_str('{"type":"commit"}')
        await read(ws, got, lambda r: r.of("usage") or r.close_code is not None, timeout=5)
    assert sim.abandoned == 1  # the simulator did drop that response.done
    assert got.close_code is None and got.of("error") == []
    assert len(got.audio) > 0 and got.of("usage")


async def test_xai_partial_completed_gives_one_final_per_utterance(http, xai):
    bridge, _ = xai
    created = await mint(http, bridge, "xai")
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        await ws.send_bytes(tone(1.0, 24000))
        await ws.send_str('{"type":"commit"}')
        got = await read(ws, Received(), lambda r: r.of("usage"))
    finals = [f["text"] for f in got.of("transcript") if f["role"] == "user" and f["final"]]
    assert finals == ["I spoke for 1.0 seconds."]
    assert_transcripts_join(got)


async def test_xai_truncation_errors_after_a_barge_in_are_not_forwarded(http, xai):
    bridge, sim = xai
    sim.config.reply_ms, sim.config.delta_interval = 3000, 0.02
    created = await mint(http, bridge, "xai")
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        got, _ = await interrupt_mid_answer(ws)
        await ws.send_bytes(tone(0.5, 24000))  # the session goes on
        await ws.send_str('{"type":"commit"}')
        await read(ws, got, lambda r: len(r.of("usage")) == 2)
    truncates = [e for e in sim.received[0] if e.get("type") == "conversation.item.truncate"]
    assert truncates  # the simulator answered it with its truncation error
    assert got.of("error") == [] and got.close_code is None
