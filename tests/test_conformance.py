"""One conformance suite for every provider: the same client scripts, through the real
bridge, against each provider's simulator over real sockets. Whoever answers, the client
must see the same frame types in the same order, the same close codes, and the same usage
accounting."""

from __future__ import annotations

import json
import time

import pytest

from speko_bridge.config import PROVIDER_KEY_VARS, PROVIDER_URL_VARS
from speko_bridge.simulator.google import GoogleSimConfig, GoogleSimulator
from speko_bridge.simulator.openai import OpenAISimConfig, OpenAISimulator
from speko_bridge.simulator.xai import XAISimConfig, XAISimulator

from .conftest import auth, run_bridge
from .wsclient import (
    ETHERNET_MSS,
    LONG_REPLY_MS,
    WEATHER_TOOL,
    RawClient,
    Received,
    assert_clean_close,
    closed,
    fall_behind_and_interrupt,
    interrupt_mid_answer,
    mint,
    odd_chunks,
    read,
    reply_signal,
    tone,
    wait_record,
)

SIMULATORS = {
    "openai": (OpenAISimulator, OpenAISimConfig),
    "google": (GoogleSimulator, GoogleSimConfig),
    "xai": (XAISimulator, XAISimConfig),
}
SIM_KEY = "sk-sim"
REPLY_MS = 1000


@pytest.fixture(params=sorted(SIMULATORS))
def provider(request) -> str:
    return request.param


async def start_simulator(provider: str, **config):
    cls, config_cls = SIMULATORS[provider]
    simulator = cls(config_cls(**{"api_key": SIM_KEY, "reply_ms": REPLY_MS, **config}))
    await simulator.start("127.0.0.1", 0)
    return simulator


@pytest.fixture
async def sim(provider):
    simulator = await start_simulator(provider)
    yield simulator
    await simulator.stop()


def provider_env(env: dict, provider: str, url: str, key: str = SIM_KEY) -> dict:
    return {**env, PROVIDER_URL_VARS[provider]: url, PROVIDER_KEY_VARS[provider]: key}


@pytest.fixture
async def bridge(env, provider, sim):
    async with run_bridge(provider_env(env, provider, sim.url)) as server:
        yield server


def shape(r: Received) -> list[str]:
    """The text frames as a sequence of kinds, repeats collapsed: what a UI reacts to."""
    kinds: list[str] = []
    for f in r.frames:
        kind = f["type"]
        if kind == "transcript":
            kind = f"{f['role']}{'.final' if f['final'] else ''}"
        if not kinds or kinds[-1] != kind:
            kinds.append(kind)
    return kinds


def assert_transcripts_join(r: Received) -> None:
    for role in ("user", "assistant"):
        finals = [f["text"] for f in r.of("transcript") if f["role"] == role and f["final"]]
        # every final equals the deltas sent since the previous final of that role
        deltas: list[str] = []
        joined: list[str] = []
        for f in r.of("transcript"):
            if f["role"] != role:
                continue
            if f["final"]:
                joined.append("".join(deltas))
                deltas = []
            else:
                deltas.append(f["text"])
        assert joined == finals, (role, joined, finals)


#: What a UI sees of one turn. Gemini's input transcription is not ordered against the reply
#: (it arrives late and split around the first audio, as the real service sends it), so the
#: user's final, complete and once, comes with the turn's end instead of before the reply.
PLAIN_SHAPE = {"openai": ["user", "user.final", "assistant", "assistant.final", "usage"],
               "xai": ["user", "user.final", "assistant", "assistant.final", "usage"],
               "google": ["user", "assistant", "user", "assistant", "user.final", "assistant.final", "usage"]}
TOOL_SHAPE = {"openai": ["user", "user.final", "tool_call", "usage", "assistant", "assistant.final", "usage"],
              "xai": ["user", "user.final", "tool_call", "usage", "assistant", "assistant.final", "usage"],
              "google": ["user", "tool_call", "usage", "user", "assistant", "user.final", "assistant.final",
                         "usage"]}


async def test_plain_turn_at_every_rate_pair(http, bridge, sim, provider):
    for in_rate in (16000, 24000):
        for out_rate in (16000, 24000):
            created = await mint(http, bridge, provider, inputSampleRate=in_rate, outputSampleRate=out_rate)
            async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
                for chunk in odd_chunks(tone(1.0, in_rate)):  # before the provider is ready: held
                    await ws.send_bytes(chunk)
                await ws.send_str('{"type":"commit"}')
                got = await read(ws, Received(), lambda r: r.of("usage"))
                await ws.close()
            assert shape(got) == PLAIN_SHAPE[provider], shape(got)
            assert_transcripts_join(got)
            user_final = [f["text"] for f in got.of("transcript") if f["role"] == "user" and f["final"]]
            assert user_final == ["I spoke for 1.0 seconds."], (in_rate, user_final)
            # REPLY_MS of provider audio, heard at out_rate: exact within the resampler's delay
            assert abs(len(got.audio) // 2 - out_rate * REPLY_MS // 1000) <= 2, (in_rate, out_rate, len(got.audio))
            assert len(got.audio) % 2 == 0
            rec = await wait_record(http, bridge, created["sessionId"], "ended")
            assert rec["closeCode"] == 1000
            usage = got.of("usage")[0]
            assert rec["usage"] == {k: usage[k] for k in ("inputAudioTokens", "outputAudioTokens")}
            assert usage["outputAudioTokens"] > 0
    assert sim.violations == []


async def test_tool_call_and_result(http, bridge, sim, provider):
    created = await mint(http, bridge, provider, tools=[WEATHER_TOOL], systemPrompt="Be brief.")
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        await ws.send_bytes(tone(0.5, 24000))
        await ws.send_str('{"type":"commit"}')
        got = await read(ws, Received(), lambda r: r.of("tool_call") and r.of("usage"))
        (call,) = got.of("tool_call")
        assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Paris"}
        await ws.send_str(json.dumps({"type": "tool_result", "callId": call["callId"],
                                      "output": json.dumps({"temp_c": 21})}))
        await read(ws, got, lambda r: len(r.of("usage")) == 2)
    assert shape(got) == TOOL_SHAPE[provider], shape(got)
    assert [f["text"] for f in got.of("transcript") if f["role"] == "user" and f["final"]] == [
        "I spoke for 0.5 seconds."]  # once, complete
    assert len(got.of("tool_call")) == 1
    assert_transcripts_join(got)
    assert "21" in [f["text"] for f in got.of("transcript") if f["role"] == "assistant" and f["final"]][0]
    assert abs(len(got.audio) // 2 - 24000 * REPLY_MS // 1000) <= 2
    assert sim.violations == []


async def test_interrupt_mid_answer_then_next_turn(http, bridge, sim, provider):
    sim.config.reply_ms = 3000
    sim.config.delta_interval = 0.02  # the reply streams for a while: in flight when we interrupt
    created = await mint(http, bridge, provider)
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        got, _ = await interrupt_mid_answer(ws)
        # the session goes on: a second turn is answered in full
        sim.config.reply_ms = 500
        before = len(got.audio)
        await ws.send_bytes(tone(0.5, 24000))
        await ws.send_str('{"type":"commit"}')
        await read(ws, got, lambda r: len(r.of("usage")) == 2)
    assert abs((len(got.audio) - before) // 2 - 12000) <= 2
    assert got.of("error") == [] and got.of("close") == []
    assert [k for k in shape(got)[-4:] if k != "user.final"][-3:] == ["assistant", "assistant.final", "usage"]
    assert sim.violations == []


async def test_interrupt_while_the_listener_is_behind_then_next_turn(http, bridge, sim, provider):
    # The listener reads slower than the reply comes (a phone on a weak network) and
    # interrupts: it gets an unbroken start of the reply and nothing after it, not the
    # queued rest nor late chunks, then the next turn in full.
    sim.config.reply_ms = LONG_REPLY_MS
    created = await mint(http, bridge, provider)
    client = await RawClient.connect(bridge.port, "/v1/realtime", [created["token"]], mss=ETHERNET_MSS)
    try:
        got = Received()
        heard = await fall_behind_and_interrupt(client, got)
        sim.config.reply_ms = 500
        client.send(tone(0.5, 24000))
        client.send('{"type":"commit"}')
        await client.read(got, lambda r: len(r.of("usage")) == 2 or closed(r))
    finally:
        client.close()
    reply = reply_signal(LONG_REPLY_MS)
    assert bytes(got.audio[:heard]) == reply[:heard]
    assert heard < len(reply) // 2, "the listener was not behind: nothing was queued to drop"
    assert abs((len(got.audio) - heard) // 2 - 12000) <= 2
    assert got.of("error") == [] and got.of("close") == []
    assert sim.violations == []


async def test_ttl_closes_with_4008(http, bridge, provider):
    created = await mint(http, bridge, provider, ttlSeconds=1)
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        start = time.monotonic()
        got = await read(ws, Received(), closed, timeout=5)
    assert 0.9 <= time.monotonic() - start < 3
    assert [e["code"] for e in got.of("error")] == ["session_expired"]
    assert_clean_close(got, 4008)
    assert (await wait_record(http, bridge, created["sessionId"], "ended"))["closeCode"] == 4008


async def test_revoking_a_live_session_closes_it_with_4004_within_1s(http, bridge, provider):
    created = await mint(http, bridge, provider)
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        await ws.send_str('{"type":"commit"}')
        got = await read(ws, Received(), lambda r: r.of("usage"))
        start = time.monotonic()
        async with http.delete(f"{bridge.base}/v1/sessions/{created['sessionId']}", headers=auth()) as r:
            assert r.status == 200
        await read(ws, got, closed, timeout=2)
        assert time.monotonic() - start < 1.0
    assert got.of("error")[-1]["code"] == "session_revoked"
    assert_clean_close(got, 4004)
    rec = await wait_record(http, bridge, created["sessionId"], "revoked")
    assert rec["closeCode"] == 4004 and rec["usage"]["outputAudioTokens"] > 0


@pytest.mark.parametrize("fail", ["drop_mid_response", "close_mid_response"])
async def test_upstream_failure_mid_answer_gives_4500(http, bridge, sim, provider, fail):
    sim.config.fail = fail
    created = await mint(http, bridge, provider)
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        await ws.send_bytes(tone(0.2, 24000))
        await ws.send_str('{"type":"commit"}')
        got = await read(ws, Received(), closed)
    assert got.of("error")[-1]["code"] == "provider_unavailable"
    assert_clean_close(got, 4500)
    assert (await wait_record(http, bridge, created["sessionId"], "ended"))["closeCode"] == 4500


async def test_provider_refusing_our_key_gives_4502(http, env, sim, provider):
    async with run_bridge(provider_env(env, provider, sim.url, key="wrong-key")) as b:
        created = await mint(http, b, provider)
        async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
            await ws.send_bytes(tone(0.2, 24000))
            got = await read(ws, Received(), closed)
        assert [e["code"] for e in got.of("error")] == ["provider_auth_failed"]
        assert_clean_close(got, 4502)
        assert (await wait_record(http, b, created["sessionId"], "ended"))["closeCode"] == 4502
