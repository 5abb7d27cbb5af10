"""Gemini Live: the codec sans-IO (providers.md 3 sequences in, exact events out; what it
sends validated against the ``google-genai`` types), properties over any server message,
and the simulator and bridge over real sockets (close codes, goAway resumption)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speko_bridge.frames import ToolCall, Transcript, Usage
from speko_bridge.params import SessionParams, ToolSpec
from speko_bridge.providers.base import (
    AudioDone,
    AudioOut,
    ClearAudio,
    Fatal,
    Malformed,
    Ready,
    Reconnect,
)
from speko_bridge.providers.google import GoogleCodec
from speko_bridge.simulator.google import live_message_checker

from .strategies import json_values
from .wsclient import (
    Received,
    assert_clean_close,
    closed,
    interrupt_mid_answer,
    mint,
    odd_chunks,
    read,
    tone,
    wait_record,
)

check = live_message_checker()
TOOLS = [ToolSpec(name="get_weather", description="Get weather",
                  parameters={"type": "object", "properties": {"city": {"type": "string"},
                                                            "days": {"type": ["integer", "null"]}},
                              "required": ["city"]})]
MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"


def codec(**kw) -> GoogleCodec:
    return GoogleCodec(SessionParams(provider="google", model=MODEL, **kw))


def valid(messages) -> list[dict]:
    decoded = [json.loads(m) for m in messages]
    for m in decoded:
        problem = check(m)
        assert problem is None, (problem, m)
    return decoded


def feed(c: GoogleCodec, *messages, binary: bool = True) -> list:
    out = []
    for m in messages:
        data = json.dumps(m)
        out += c.receive(data.encode() if binary else data)
    return out


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def audio_msg(pcm: bytes, mime: str = "audio/pcm;rate=24000") -> dict:
    return {"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": mime, "data": b64(pcm)}}]}}}


# --------------------------------------------------------------------------- what we send


def test_checker_is_strict_and_accepts_either_case():
    assert check({"setup": {"model": "models/x", "bogus": 1}}) is not None
    assert check({"realtimeInput": {"audio": {"data": "AAA=", "mimeType": "audio/pcm"}, "activityEnd": {}}})
    assert check({"realtimeInput": {}, "toolResponse": {}}) is not None
    assert check({"realtime_input": {"audio": {"data": "AAA=", "mime_type": "audio/pcm;rate=16000"}}}) is None
    assert check({"setup": {"model": "models/x", "realtimeInputConfig": {"automaticActivityDetection": {
        "disabled": "yes please"}}}}) is not None


def test_setup_carries_every_param_and_is_valid():
    c = codec(voice="Kore", system_prompt="Be brief.", temperature=0.7, tools=TOOLS)
    (msg,) = valid(c.start())
    s = msg["setup"]
    assert s["model"] == f"models/{MODEL}"
    assert s["generationConfig"] == {"responseModalities": ["AUDIO"], "temperature": 0.7, "speechConfig": {
        "voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}}}
    assert s["systemInstruction"] == {"parts": [{"text": "Be brief."}], "role": "user"}
    assert s["realtimeInputConfig"] == {"automaticActivityDetection": {"disabled": True}}
    assert s["inputAudioTranscription"] == {} and s["outputAudioTranscription"] == {}
    assert s["sessionResumption"] == {}
    (decl,) = s["tools"][0]["functionDeclarations"]
    assert decl["name"] == "get_weather" and decl["description"] == "Get weather"
    assert decl["parameters"] == {"type": "OBJECT", "required": ["city"], "properties": {
        "city": {"type": "STRING"}, "days": {"type": "INTEGER", "nullable": True}}}
    # defaults: Puck, no temperature, a model that already has the prefix kept as is
    (plain,) = valid(GoogleCodec(SessionParams(provider="google", model="models/gemini-2.5-flash-native-audio-preview-12-2025")).start())
    assert plain["setup"]["model"] == "models/gemini-2.5-flash-native-audio-preview-12-2025"
    assert plain["setup"]["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"][
        "voiceName"] == "Puck"
    assert "temperature" not in plain["setup"]["generationConfig"] and "tools" not in plain["setup"]


def test_turns_are_bracketed_by_activities():
    c = codec()
    assert c.input_rate == 16000
    first = valid(c.audio(b"\x01\x02" * 10))
    assert first[0] == {"realtimeInput": {"activityStart": {}}}
    assert first[1]["realtimeInput"]["audio"]["mimeType"] == "audio/pcm;rate=16000"
    assert base64.b64decode(first[1]["realtimeInput"]["audio"]["data"]) == b"\x01\x02" * 10
    assert len(valid(c.audio(b"\0\0"))) == 1  # same activity
    assert valid(c.commit()) == [{"realtimeInput": {"activityEnd": {}}}]
    # a commit with no audio still makes a (empty) turn
    assert valid(c.commit()) == [{"realtimeInput": {"activityStart": {}}}, {"realtimeInput": {"activityEnd": {}}}]


def test_tool_results_echo_id_and_name_and_wrap_non_objects():
    c = codec(tools=TOOLS)
    feed(c, {"toolCall": {"functionCalls": [{"id": "function-call-1", "name": "get_weather", "args": {}}]}})
    (obj,) = valid(c.tool_result("function-call-1", '{"temp_c": 21}'))
    assert obj == {"toolResponse": {"functionResponses": [
        {"id": "function-call-1", "name": "get_weather", "response": {"temp_c": 21}}]}}
    for output in ("21 degrees", "[1, 2]", "42", "{broken"):
        (wrapped,) = valid(c.tool_result("function-call-1", output))
        assert wrapped["toolResponse"]["functionResponses"][0]["response"] == {"output": output}


# --------------------------------------------------------------------------- what we hear


def test_recorded_sequence_from_providers_md():
    c = codec(tools=TOOLS)
    pcm = tone(0.1, 24000)
    assert feed(c, {"setupComplete": {}}) == [Ready()]
    out = feed(c,
               {"serverContent": {"inputTranscription": {"text": "What's the weather"}}},
               {"serverContent": {"inputTranscription": {"text": " in Paris?"}}},
               {"toolCall": {"functionCalls": [{"id": "function-call-8412", "name": "get_weather",
                                                "args": {"city": "Paris"}}]}},
               {"sessionResumptionUpdate": {"resumable": False}})
    # the call ends the model's turn with one usage frame (zeros: none reported); the user's
    # final waits for turnComplete (the transcription may still be arriving)
    assert out == [Transcript("user", "What's the weather", False), Transcript("user", " in Paris?", False),
                   ToolCall("function-call-8412", "get_weather", '{"city": "Paris"}'),  # args as sent
                   Usage(0, 0)]
    c.tool_result("function-call-8412", '{"result": {"temp_c": 21}}')
    out = feed(c,
               audio_msg(pcm),
               {"serverContent": {"outputTranscription": {"text": "It's 21 degrees in Paris."}}},
               {"serverContent": {"generationComplete": True}},
               {"serverContent": {"turnComplete": True}, "usageMetadata": {
                   "promptTokenCount": 412, "responseTokenCount": 96, "totalTokenCount": 508,
                   "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 300},
                                           {"modality": "AUDIO", "tokenCount": 112}],
                   "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 96}]}},
               {"sessionResumptionUpdate": {"newHandle": "Cg4abc", "resumable": True}},
               binary=False)  # the server sends text frames at times too
    assert out == [AudioOut(pcm, 24000), Transcript("assistant", "It's 21 degrees in Paris.", False),
                   AudioDone(), Transcript("user", "What's the weather in Paris?", True),
                   Transcript("assistant", "It's 21 degrees in Paris.", True), Usage(112, 96)]
    assert c.stats.unknown_events == 0 and c.stats.malformed_events == 0


def test_output_rate_is_read_from_the_mime_type():
    c = codec()
    assert feed(c, audio_msg(b"\0\0", "audio/pcm;rate=16000"))[0].sample_rate == 16000
    assert feed(c, audio_msg(b"\0\0", "audio/pcm"))[0].sample_rate == 24000  # bare: 24 kHz


def test_interrupt_starts_an_activity_and_drops_the_rest_of_the_reply():
    c = codec()
    c.commit()
    feed(c, audio_msg(b"\1\1"))
    assert valid(c.interrupt(played_ms=10)) == [{"realtimeInput": {"activityStart": {}}}]
    assert feed(c, audio_msg(b"\2\2")) == []  # late audio of the interrupted reply
    assert feed(c, {"serverContent": {"interrupted": True}}) == [ClearAudio()]
    out = feed(c, {"serverContent": {"turnComplete": True}})
    assert not any(isinstance(e, AudioOut) for e in out)
    # the interrupting activity is open: audio goes straight in, commit ends it
    assert len(valid(c.audio(b"\0\0"))) == 1
    assert valid(c.commit()) == [{"realtimeInput": {"activityEnd": {}}}]
    assert feed(c, audio_msg(b"\3\3")) == [AudioOut(b"\3\3", 24000)]
    # nothing in flight: interrupt sends nothing
    feed(c, {"serverContent": {"turnComplete": True}})
    assert c.interrupt(played_ms=0) == []


def test_cancelled_calls_are_forgotten():
    c = codec(tools=TOOLS)
    feed(c, {"toolCall": {"functionCalls": [{"id": "a", "name": "get_weather", "args": {}},
                                             {"id": "b", "name": "get_weather", "args": {}}]}})
    assert feed(c, {"toolCallCancellation": {"ids": ["a"]}}) == []
    assert c.tool_result("a", "{}") == []
    assert len(c.tool_result("b", "{}")) == 1


@pytest.mark.parametrize("code,reason,expected", [
    (1007, "API key not valid. Please pass a valid API key.", (4502, "provider_auth_failed")),
    (1007, "Request contains an invalid argument.", (4502, "provider_error")),
    (1008, "models/x is not found for API version v1beta", (4502, "provider_error")),
    (1011, "Internal error occurred.", (4500, "provider_unavailable")),
    (1000, "", (4500, "provider_unavailable")),
    (None, "", (4500, "provider_unavailable")),
])
def test_close_codes_map_to_protocol_errors(code, reason, expected):
    fatal = codec().upstream_closed(code, reason)
    assert isinstance(fatal, Fatal) and (fatal.close_code, fatal.error_code) == expected
    if reason:
        assert reason in fatal.message


def test_go_away_reconnects_only_where_resuming_loses_nothing():
    c = codec()
    feed(c, {"setupComplete": {}})
    assert feed(c, {"goAway": {"timeLeft": "10s"}}) == []  # no handle yet: nothing to resume
    feed(c, {"sessionResumptionUpdate": {"newHandle": "h1", "resumable": True}})
    # resumable, idle: at once
    c2 = codec()
    feed(c2, {"sessionResumptionUpdate": {"newHandle": "h1", "resumable": True}})
    assert [type(e) for e in feed(c2, {"goAway": {"timeLeft": "10s"}})] == [Reconnect]
    assert json.loads(c2.start()[0])["setup"]["sessionResumption"] == {"handle": "h1"}
    # mid-turn: wait for the handle issued after turnComplete
    c3 = codec()
    feed(c3, {"sessionResumptionUpdate": {"newHandle": "h1", "resumable": True}})
    c3.commit()
    feed(c3, audio_msg(b"\0\0"))
    assert feed(c3, {"goAway": {"timeLeft": "10s"}}) == []
    feed(c3, {"serverContent": {"turnComplete": True}})
    assert [type(e) for e in feed(c3, {"sessionResumptionUpdate": {"newHandle": "h2", "resumable": True}})] == [
        Reconnect]
    assert json.loads(c3.start()[0])["setup"]["sessionResumption"] == {"handle": "h2"}


# --------------------------------------------------------------------------- properties

text = st.text(max_size=12)
call_ids = st.sampled_from(["function-call-1", "function-call-2", "c3", None])
good = st.one_of(
    st.builds(lambda d, m: audio_msg(d, m), st.binary(max_size=64),
              st.sampled_from(["audio/pcm", "audio/pcm;rate=24000", "audio/pcm;rate=16000"])),
    st.builds(lambda t: {"serverContent": {"outputTranscription": {"text": t}}}, text),
    st.builds(lambda t: {"serverContent": {"inputTranscription": {"text": t}}}, text),
    st.builds(lambda i, a: {"toolCall": {"functionCalls": [{"id": i, "name": "f", "args": a}]}},
              call_ids, st.dictionaries(st.text(max_size=4), st.integers(), max_size=2)),
    st.builds(lambda i: {"toolCallCancellation": {"ids": [i]}}, call_ids),
    st.sampled_from([{"serverContent": {"turnComplete": True}}, {"serverContent": {"generationComplete": True}},
                     {"serverContent": {"interrupted": True}}, {"setupComplete": {}},
                     {"goAway": {"timeLeft": "1s"}}, {"sessionResumptionUpdate": {"newHandle": "h", "resumable": True}},
                     {"usageMetadata": {"promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 3}]}}]),
)
garbage = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=40).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(lambda k, v: json.dumps({k: v}).encode(),
              st.sampled_from(["serverContent", "toolCall", "usageMetadata", "goAway", "setupComplete",
                               "sessionResumptionUpdate", "toolCallCancellation", "voiceActivity"]), json_values),
    st.builds(lambda s: json.dumps({"serverContent": {"modelTurn": {"parts": [{"inlineData": {"data": s}}]}}}).encode(),
              st.text(max_size=20)),
)



def test_unreadable_messages_and_parts_become_one_malformed_event():
    c = codec(tools=TOOLS)
    assert c.receive(b"{not json") == [Malformed("not a JSON message of the expected shape")]
    assert c.receive(b'{"serverContent": {"turnComplete": "yes"}}') == [
        Malformed("not a JSON message of the expected shape")]
    # two unreadable audio parts around a good one: the good audio goes on, one event
    parts = [{"inlineData": {"data": "A"}}, {"inlineData": {"data": b64(b"ok")}}, {"inlineData": {"data": "B"}}]
    assert feed(c, {"serverContent": {"modelTurn": {"parts": parts}}}) == [
        Malformed("modelTurn audio is not base64"), AudioOut(b"ok", 24000)]
    assert c.stats.malformed_events == 4
    out = feed(c, {"toolCall": {"functionCalls": [{"id": "a", "args": {}}, {"id": "b", "name": "get_weather"}]}})
    assert out == [Malformed("functionCall without name"), ToolCall("b", "get_weather", "{}"), Usage(0, 0)]
    # args that are not UTF-8 (msgspec checks strings, not the raw object it hands over)
    bad = b'{"toolCall": {"functionCalls": [{"id": "c", "name": "get_weather", "args": {"city": "\xff"}}]}}'
    assert c.receive(bad) == [Malformed("functionCall args are not UTF-8")]
    # the call was not remembered: a readable retry with the same id goes through
    assert feed(c, {"toolCall": {"functionCalls": [{"id": "c", "name": "get_weather", "args": {"city": "x"}}]}}) == [
        ToolCall("c", "get_weather", '{"city": "x"}'), Usage(0, 0)]  # as sent (json.dumps spacing)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(good.map(lambda m: json.dumps(m).encode()), garbage), max_size=30))
def test_receive_never_raises_and_invariants_hold(messages):
    c = codec(tools=TOOLS)
    events = []
    for m in messages:
        counted = c.stats.malformed_events
        got = c.receive(m)
        # an unreadable message (or part) is counted and reported once per message
        assert sum(type(e) is Malformed for e in got) == (c.stats.malformed_events > counted)
        events += got
    calls = [e.call_id for e in events if isinstance(e, ToolCall)]
    assert len(calls) == len(set(calls))  # exactly one tool_call per call id
    assert all(json.loads(e.arguments).__class__ is dict for e in events if isinstance(e, ToolCall))
    # with no interrupt, audio out is exactly the decodable inline data, in order
    expected = b""
    for m in messages:
        try:
            parts = json.loads(m)["serverContent"]["modelTurn"]["parts"]
            data = parts[0]["inlineData"]["data"]
        except (ValueError, KeyError, TypeError, IndexError):
            continue
        read = c.stats.events
        c.receive(m)
        if c.stats.events == read:  # a message the typed decoder refuses as a whole
            continue
        try:
            expected += binascii.a2b_base64(data)
        except (binascii.Error, ValueError):
            pass
    assert b"".join(e.pcm for e in events if isinstance(e, AudioOut)) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=10), max_size=10), st.lists(st.text(min_size=1, max_size=10), max_size=10),
       st.lists(st.binary(min_size=2, max_size=100), max_size=10))
def test_fragments_join_to_the_final_transcripts(user, assistant, chunks):
    c = codec()
    msgs = [{"serverContent": {"inputTranscription": {"text": t}}} for t in user]
    msgs += [audio_msg(ch) for ch in chunks]
    msgs += [{"serverContent": {"outputTranscription": {"text": t}}} for t in assistant]
    msgs.append({"serverContent": {"turnComplete": True}})
    out = feed(c, *msgs)
    for role, fragments in (("user", user), ("assistant", assistant)):
        ts = [e for e in out if isinstance(e, Transcript) and e.role == role]
        finals = [t.text for t in ts if t.final]
        assert finals == (["".join(fragments)] if fragments else [])
        assert "".join(t.text for t in ts if not t.final) == "".join(fragments)
    assert b"".join(e.pcm for e in out if isinstance(e, AudioOut)) == b"".join(chunks)


# --------------------------------------------------------------------------- over sockets


@pytest.mark.parametrize("first,key,code", [
    ({"setup": {"model": "models/gemini-2.5-flash-native-audio-preview-12-2025", "bogus": True}}, "sk-sim", 1007),
    ({"realtimeInput": {"activityStart": {}}}, "sk-sim", 1007),
    ({"setup": {"model": "models/gemini-2.5-flash-native-audio-preview-12-2025"}}, "wrong", 1007),
    ({"setup": {"model": "models/unknown-model"}}, "sk-sim", 1008),
])
async def test_simulator_refuses_like_gemini(gemini_sim, first, key, code):
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(gemini_sim.url, headers={"x-goog-api-key": key}) as ws:  # the upgrade succeeds
            await ws.send_str(json.dumps(first))
            msg = await ws.receive()
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == code
    assert len(msg.extra.encode()) <= 123


async def test_16k_client_audio_reaches_gemini_untouched_and_24k_is_resampled(http, gemini_bridge, gemini_sim):
    for rate in (16000, 24000):
        created = await mint(http, gemini_bridge, "google", inputSampleRate=rate)
        speech = tone(1.0, rate)
        async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
            for chunk in odd_chunks(speech):
                await ws.send_bytes(chunk)
            await ws.send_str('{"type":"commit"}')
            await read(ws, Received(), lambda r: r.of("usage"))
        sent = [m["realtimeInput"] for m in gemini_sim.received[-1] if "realtimeInput" in m]
        assert sent[0] == {"activityStart": {}} and sent[-1] == {"activityEnd": {}}
        pcm = b"".join(base64.b64decode(m["audio"]["data"]) for m in sent if "audio" in m)
        if rate == 16000:
            assert pcm == speech  # byte for byte
        else:
            assert abs(len(pcm) // 2 - 16000) <= 2
    assert gemini_sim.violations == []


async def test_text_frames_from_gemini_work_too(http, gemini_bridge, gemini_sim):
    gemini_sim.config.text_frames = True
    created = await mint(http, gemini_bridge, "google")
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        await ws.send_bytes(tone(0.5, 24000))
        await ws.send_str('{"type":"commit"}')
        got = await read(ws, Received(), lambda r: r.of("usage"))
    assert len(got.audio) == 24000 * 2 // 2 and got.text("assistant")[1] == ["You spoke for 0.5 seconds."]


@pytest.mark.parametrize("send_interrupted", [True, False], ids=["interrupted", "turnComplete-only"])
async def test_the_reply_after_an_interrupt_is_heard_whole(http, gemini_bridge, gemini_sim, send_interrupted):
    # Gemini may end an interrupted turn with turnComplete alone: the gate that drops the
    # interrupted reply's audio must reopen then too, or the whole next reply is silent.
    gemini_sim.config.send_interrupted = send_interrupted
    gemini_sim.config.reply_ms = 3000
    gemini_sim.config.delta_interval = 0.02  # still streaming when the interrupt lands
    created = await mint(http, gemini_bridge, "google")
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        await interrupt_mid_answer(ws)  # reads up to the interrupted turn's usage
        gemini_sim.config.reply_ms = 500
        await ws.send_bytes(tone(0.3, 24000))
        await ws.send_str('{"type":"commit"}')
        second = await read(ws, Received(), lambda r: r.of("usage") or closed(r))
    assert abs(len(second.audio) // 2 - 12000) <= 2, len(second.audio)  # all 500 ms at 24 kHz
    assert second.text("assistant")[1] == ["You spoke for 0.3 seconds."]
    assert second.of("error") == [] and gemini_sim.violations == []


@pytest.mark.parametrize("close,expected", [
    ((1007, "Request contains an invalid argument."), (4502, "provider_error")),
    ((1008, "Policy violation."), (4502, "provider_error")),
    ((1011, "The service is currently unavailable."), (4500, "provider_unavailable")),
])
async def test_gemini_close_codes_reach_the_client_mapped(http, gemini_bridge, gemini_sim, close, expected):
    gemini_sim.config.fail = "close_mid_response"
    gemini_sim.config.fail_close = close
    created = await mint(http, gemini_bridge, "google")
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        await ws.send_str('{"type":"commit"}')
        got = await read(ws, Received(), closed)
    (error,) = got.of("error")
    assert error["code"] == expected[1] and close[1] in error["message"]
    assert_clean_close(got, expected[0])
    assert (await wait_record(http, gemini_bridge, created["sessionId"], "ended"))["closeCode"] == expected[0]


async def test_go_away_resumes_on_a_new_connection_without_a_break(http, gemini_bridge, gemini_sim):
    gemini_sim.config.go_away_after = 0.1  # arrives in the middle of the first reply
    gemini_sim.config.go_away_grace = 5.0
    gemini_sim.config.delta_interval = 0.05  # 500 ms reply in 5 chunks: ~0.25 s on the wire
    created = await mint(http, gemini_bridge, "google")
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        await ws.send_bytes(tone(0.5, 24000))
        await ws.send_str('{"type":"commit"}')
        got = await read(ws, Received(), lambda r: r.of("usage"))
        assert abs(len(got.audio) // 2 - 12000) <= 2  # the first reply was not cut short
        for _ in range(50):
            if gemini_sim.connections == 2 and gemini_sim.resumed == 1:
                break
            await asyncio.sleep(0.02)
        # the second turn goes to the resumed connection
        await ws.send_bytes(tone(0.3, 24000))
        await ws.send_str('{"type":"commit"}')
        await read(ws, got, lambda r: len(r.of("usage")) == 2)
    assert got.of("error") == [] and got.of("close") == []
    assert abs(len(got.audio) // 2 - 24000) <= 4
    assert got.text("assistant")[1] == ["You spoke for 0.5 seconds.", "You spoke for 0.3 seconds."]
    assert gemini_sim.connections == 2 and gemini_sim.resumed == 1
    first_setup = gemini_sim.received[1][0]["setup"]
    assert first_setup["sessionResumption"]["handle"].startswith("Cg4")
    assert gemini_sim.violations == []
    rec = await wait_record(http, gemini_bridge, created["sessionId"], "ended")
    assert rec["closeCode"] == 1000
