"""Issue 19, Gemini: through the real bridge against the Gemini simulator playing what the
real service does (1008 on input during a BLOCKING call, NON_BLOCKING by default, the
15-minute cap without compression, late input transcription, rejected turns)."""

from __future__ import annotations

import asyncio
import json

import pytest

from .conftest import auth
from .test_conformance import assert_transcripts_join, shape
from .wsclient import WEATHER_TOOL, Received, mint, read, tone

RATE = 24000


async def turn(ws, got: Received, seconds: float = 0.5, usages: int | None = None) -> Received:
    await ws.send_bytes(tone(seconds, RATE))
    await ws.send_str('{"type":"commit"}')
    want = (len(got.of("usage")) + 1) if usages is None else usages
    return await read(ws, got, lambda r: len(r.of("usage")) >= want or r.close_code is not None)


def user_finals(got: Received) -> list[str]:
    return [f["text"] for f in got.of("transcript") if f["role"] == "user" and f["final"]]


async def test_talking_while_a_slow_tool_runs_keeps_the_session(http, gemini_bridge, gemini_sim):
    created = await mint(http, gemini_bridge, "google", tools=[WEATHER_TOOL])
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        got = await turn(ws, Received())
        (call,) = got.of("tool_call")
        # the tool is slow; the user keeps talking and even commits
        for _ in range(5):
            await ws.send_bytes(tone(0.2, RATE))
        await ws.send_str('{"type":"commit"}')
        await asyncio.sleep(0.3)
        await ws.send_str(json.dumps({"type": "tool_result", "callId": call["callId"], "output": '{"temp_c": 21}'}))
        await read(ws, got, lambda r: len(r.of("usage")) >= 2 or r.close_code is not None)
        assert got.close_code is None and got.of("error") == [], got.frames[-3:]
        assert "21" in [f["text"] for f in got.of("transcript") if f["role"] == "assistant" and f["final"]][0]
        # and the session goes on: the next turn is heard
        await turn(ws, got)
        assert got.close_code is None and len(got.of("tool_call")) == 2
    assert gemini_sim.violations == []


async def test_an_interrupt_gives_up_a_call_that_never_returns(http, gemini_bridge, gemini_sim):
    created = await mint(http, gemini_bridge, "google", tools=[WEATHER_TOOL])
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        got = await turn(ws, Received())
        (call,) = got.of("tool_call")
        await ws.send_str('{"type":"interrupt"}')  # the user would rather talk than wait
        await read(ws, got, lambda r: len(r.of("usage")) >= 2)
        await turn(ws, got)  # heard again: a new call for the new turn
        assert got.close_code is None and got.of("error") == []
        assert len(got.of("tool_call")) == 2
        # the result that finally comes for the abandoned call goes nowhere (no close, no error)
        await ws.send_str(json.dumps({"type": "tool_result", "callId": call["callId"], "output": "late"}))
        await asyncio.sleep(0.2)
    answered = [m["toolResponse"] for m in gemini_sim.received[0] if "toolResponse" in m]
    assert answered[0]["functionResponses"][0]["id"] == call["callId"]
    assert "interrupted" in answered[0]["functionResponses"][0]["response"]["error"]
    assert len(answered) == 1 and gemini_sim.violations == []


async def test_the_gate_reopens_when_no_result_comes(http, gemini_bridge, gemini_sim):
    created = await mint(http, gemini_bridge, "google", tools=[WEATHER_TOOL])
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        got = await turn(ws, Received())
        (call,) = got.of("tool_call")
        # the user talks on for longer than a call may hold the input back
        second = tone(1.0, RATE)
        for _ in range(16):  # the codec's TOOL_WAIT_MAX_MS is 15 s
            await ws.send_bytes(second)
        await ws.send_str('{"type":"commit"}')
        await read(ws, got, lambda r: len(r.of("tool_call")) >= 2 or r.close_code is not None, timeout=15)
        assert got.close_code is None and got.of("error") == []
    answered = [m["toolResponse"] for m in gemini_sim.received[0] if "toolResponse" in m]
    assert [r["functionResponses"][0]["id"] for r in answered] == [call["callId"]]
    assert "no tool result" in answered[0]["functionResponses"][0]["response"]["error"]
    assert gemini_sim.violations == []


async def test_the_model_waits_for_the_tool_result(http, gemini_bridge, gemini_sim):
    assert gemini_sim.config.default_behavior == "NON_BLOCKING"  # the newer models' default
    created = await mint(http, gemini_bridge, "google", tools=[WEATHER_TOOL])
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        got = await turn(ws, Received())
        (call,) = got.of("tool_call")
        await asyncio.sleep(0.5)
        ws_frames = Received()
        with pytest.raises(TimeoutError):
            await read(ws, ws_frames, lambda r: False, timeout=0.5)
        # nothing of the model until the result (the user's late transcription may still come)
        assert len(ws_frames.audio) == 0
        assert [f for f in ws_frames.frames if f.get("role") != "user"] == []
        await ws.send_str(json.dumps({"type": "tool_result", "callId": call["callId"], "output": "sunny"}))
        await read(ws, got, lambda r: len(r.of("usage")) >= 2)
    (setup,) = [m["setup"] for m in gemini_sim.received[0] if "setup" in m]
    assert setup["tools"][0]["functionDeclarations"][0]["behavior"] == "BLOCKING"


async def test_a_session_outlives_the_context_cap(http, env, gemini_bridge, gemini_sim):
    gemini_sim.config.session_cap_seconds = 1.0  # the real ~15 minutes, shortened
    created = await mint(http, gemini_bridge, "google", ttlSeconds=30)
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        got = await turn(ws, Received())
        await asyncio.sleep(1.3)
        await turn(ws, got)
        assert got.close_code is None and len(got.of("usage")) == 2, got.frames[-3:]
    assert gemini_sim.capped == 0


async def test_late_user_transcription_is_final_once_and_complete(http, gemini_bridge, gemini_sim):
    gemini_sim.config.input_transcription = "after_turn"  # all of it after turnComplete
    created = await mint(http, gemini_bridge, "google")
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        got = await turn(ws, Received(), seconds=0.5)
        await read(ws, got, lambda r: any(f["role"] == "user" for f in r.of("transcript")))
        await turn(ws, got, seconds=1.0)
    # the first turn's final came once, whole, before the second turn's reply
    assert user_finals(got)[0] == "I spoke for 0.5 seconds."
    assert user_finals(got).count("I spoke for 0.5 seconds.") == 1
    assert_transcripts_join(got)
    kinds = shape(got)
    second_reply = kinds.index("assistant", kinds.index("usage"))
    assert kinds.index("user.final") < second_reply, kinds


async def test_a_rejected_turn_reaches_the_client_and_the_session_goes_on(http, gemini_bridge, gemini_sim):
    gemini_sim.config.reject_turn = 1
    created = await mint(http, gemini_bridge, "google")
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        got = await turn(ws, Received())
        (error,) = got.of("error")
        assert error["code"] == "provider_error" and "RESPONSE_REJECTED" in error["message"]
        assert got.of("usage")[0]["inputAudioTokens"] == 0  # the turn is closed, with zeros
        assert got.audio == b""
        await turn(ws, got)
        assert got.close_code is None and len(got.audio) > 0
    first = shape(got)[:shape(got).index("usage") + 1]
    assert "error" in first and "assistant" not in first, first  # the error, then the turn's end


async def test_tool_schemas_keep_what_gemini_accepts(http, gemini_bridge, gemini_sim):
    tool = {"name": "book", "parameters": {
        "type": "object", "required": ["when"],
        "properties": {
            "when": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "description": "date"},
            "seats": {"type": "integer", "minimum": 1, "maximum": 9},
            "guest": {"$ref": "#/$defs/person"},
            "note": {"anyOf": [{"type": "string", "maxLength": 200}, {"type": "null"}]},
        },
        "$defs": {"person": {"type": "object", "properties": {"name": {"type": "string", "minLength": 1}}}}}}
    created = await mint(http, gemini_bridge, "google", tools=[tool])
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        got = await turn(ws, Received())
        assert got.of("tool_call") and got.close_code is None
    (setup,) = [m["setup"] for m in gemini_sim.received[0] if "setup" in m]
    params = setup["tools"][0]["functionDeclarations"][0]["parameters"]
    assert params["properties"]["when"]["pattern"] == "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
    assert (params["properties"]["seats"]["minimum"], params["properties"]["seats"]["maximum"]) == (1, 9)
    assert params["properties"]["guest"] == {"ref": "#/defs/person"}
    assert params["defs"]["person"]["properties"]["name"] == {"type": "STRING", "minLength": 1}
    assert params["properties"]["note"]["anyOf"][0] == {"type": "STRING", "maxLength": 200}
    assert gemini_sim.violations == []  # google-genai's LiveClientMessage accepts all of it


async def test_a_commit_dropped_during_a_slow_tool_does_not_time_the_session_out(http, env, gemini_sim):
    # the provider owes no reply for a commit that never reached it: the read timeout
    # (here 1 s) must not end the session while the tool takes longer than that
    from .conftest import run_bridge

    async with run_bridge({**env, "SPEKO_GOOGLE_URL": gemini_sim.url, "GOOGLE_API_KEY": "sk-sim",
                           "SPEKO_UPSTREAM_READ_TIMEOUT": "1"}) as bridge:
        created = await mint(http, bridge, "google", tools=[WEATHER_TOOL])
        async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
            got = await turn(ws, Received())
            (call,) = got.of("tool_call")
            await ws.send_bytes(tone(0.3, RATE))
            await ws.send_str('{"type":"commit"}')
            await asyncio.sleep(2.5)  # the slow tool
            await ws.send_str(json.dumps({"type": "tool_result", "callId": call["callId"], "output": "ok"}))
            await read(ws, got, lambda r: len(r.of("usage")) >= 2 or r.close_code is not None)
            assert got.close_code is None and got.of("error") == [], got.frames[-3:]


async def test_a_model_the_gemini_api_does_not_serve_is_refused_4502(http, env, gemini_sim):
    # an operator who allows any model still gets a clear refusal from the service: 1008
    from .conftest import run_bridge
    from .wsclient import assert_clean_close, closed

    async with run_bridge({**env, "SPEKO_GOOGLE_URL": gemini_sim.url, "GOOGLE_API_KEY": "sk-sim",
                           "SPEKO_MODELS_GOOGLE": "*"}) as bridge:
        async with http.post(f"{bridge.base}/v1/sessions", headers=auth(),
                             json={"provider": "google", "model": "gemini-live-2.5-flash-native-audio"}) as r:
            created = await r.json()
        async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
            got = await read(ws, Received(), closed)
    (error,) = got.of("error")
    assert error["code"] == "provider_error" and "gemini-live-2.5-flash-native-audio" in error["message"]
    assert_clean_close(got, 4502)
