"""xAI Grok Voice Agent: where it differs from OpenAI, each difference tested (session
shape, rates without resampling, cumulative transcripts, pings, usage placement, error
wording), properties over any event sequence, and the simulator through the real bridge."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speko_bridge.frames import ToolCall, Transcript, Usage
from speko_bridge.params import ServerTurns, SessionParams, ToolSpec
from speko_bridge.providers.base import AudioOut, Malformed
from speko_bridge.providers.xai import XAICodec
from speko_bridge.simulator.xai import XAISimConfig, XAISimulator, xai_event_checker

from .conftest import run_bridge
from .strategies import json_values
from .wsclient import Received, mint, odd_chunks, read, tone

check = xai_event_checker()
TOOLS = [ToolSpec(name="get_weather", description="Get weather",
                  parameters={"type": "object", "properties": {"city": {"type": "string"}}})]


def codec(**kw) -> XAICodec:
    return XAICodec(SessionParams(provider="xai", model="grok-voice-latest", **kw))


def feed(c: XAICodec, *events) -> list:
    out = []
    for e in events:
        out += c.receive(json.dumps(e))
    return out


def test_checker_refuses_openai_ga_session_shape():
    # the real service accepts session.type "realtime" (issue 19, item 11), nothing else
    assert check({"type": "session.update", "session": {"type": "realtime"}}) is None
    assert check({"type": "session.update", "session": {"type": "transcription"}}) is not None
    assert check({"type": "session.update", "session": {"audio": {"output": {"voice": "eve"}}}}) is not None
    assert check({"type": "session.update", "session": {"temperature": 0.5}}) is not None
    assert check({"type": "session.update", "session": {"voice": "alloy"}}) is not None
    assert check({"type": "session.update", "session": {"voice": "Ara", "turn_detection": None}}) is None


@pytest.mark.parametrize("in_rate,out_rate", [(16000, 24000), (24000, 16000)])
def test_session_update_is_xai_shaped_at_the_client_rates(in_rate, out_rate):
    c = codec(voice="Rex", system_prompt="Be brief.", temperature=0.5, tools=TOOLS,
              input_sample_rate=in_rate, output_sample_rate=out_rate)
    (msg,) = c.start()
    update = json.loads(msg)
    assert check(update) is None
    s = update["session"]
    assert s["voice"] == "Rex" and s["turn_detection"] is None and s["instructions"] == "Be brief."
    assert s["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": in_rate}
    assert s["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": out_rate}
    assert s["audio"]["input"]["transcription"] == {"model": "grok-transcribe"}
    assert "type" not in s and "model" not in s and "temperature" not in json.dumps(s)
    assert s["tools"][0]["type"] == "function" and s["tools"][0]["name"] == "get_weather"
    assert c.input_rate == in_rate  # the bridge does not resample for xAI
    assert json.loads(codec().start()[0])["session"]["voice"] == "eve"


def test_recorded_sequence_from_providers_md():
    c = codec(tools=TOOLS)
    out = feed(c,
               {"type": "conversation.created", "event_id": "e1",
                "conversation": {"id": "conv_1", "object": "realtime.conversation"}},
               {"type": "session.updated", "event_id": "e2", "session": {
                   "id": "sess-1", "object": "realtime.session", "voice": "xai_eve",
                   "turn_detection": {"type": None}}},
               {"type": "ping", "event_id": "e3", "timestamp": 1767000000123},
               {"type": "input_audio_buffer.speech_started", "event_id": "e4", "item_id": "item_u1"},
               {"type": "conversation.item.input_audio_transcription.updated", "event_id": "e5",
                "item_id": "item_u1", "content_index": 0, "transcript": "what's the weather"},
               {"type": "conversation.item.input_audio_transcription.completed", "event_id": "e8",
                "item_id": "item_u1", "transcript": "What's the weather in Paris?"},
               {"type": "response.created", "event_id": "e9", "response": {
                   "id": "resp_1", "object": "realtime.response", "status": "in_progress", "output": []}},
               {"type": "response.function_call_arguments.done", "event_id": "e10", "call_id": "call_1",
                "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
               {"type": "response.done", "event_id": "e11", "response": {
                   "id": "resp_1", "object": "realtime.response", "status": "completed",
                   "output": [{"id": "item_f1", "type": "function_call", "call_id": "call_1",
                               "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}],
                   "usage": {"total_tokens": 300, "input_tokens": 280, "output_tokens": 20}}})
    frames = [e for e in out if isinstance(e, (Transcript, ToolCall, Usage))]
    # "what's the weather" was revised by the final ("What's"): deltas stop, the final is whole
    assert frames == [Transcript("user", "what's the ", False),
                      Transcript("user", "What's the weather in Paris?", True),
                      ToolCall("call_1", "get_weather", '{"city":"Paris"}'), Usage(280, 20)]
    assert c.stats.unknown_events == 0


def test_cumulative_transcripts_become_deltas_that_join_to_the_final():
    c = codec()
    updates = ["I", "I spoak", "I spoke for", "I spoke for 1.0", "I spoke for 1.0 seconds."]
    out = feed(c, *[{"type": "conversation.item.input_audio_transcription.updated", "item_id": "u",
                     "transcript": t} for t in updates],
               {"type": "conversation.item.input_audio_transcription.completed", "item_id": "u",
                "transcript": "I spoke for 1.0 seconds."})
    assert [(t.text, t.final) for t in out] == [
        ("I ", False), ("spoke ", False), ("for ", False), ("1.0 ", False), ("seconds.", False),
        ("I spoke for 1.0 seconds.", True)]


def test_duplicates_pings_and_usage_placement():
    c = codec()
    assert feed(c, {"type": "ping", "timestamp": 1}, {"type": "response.text.delta", "delta": "x"},
                {"type": "response.text.done", "text": "x"}) == []
    assert c.stats.unknown_events == 0
    top = feed(c, {"type": "response.done", "response": {"id": "r", "status": "completed"},
                   "usage": {"total_tokens": 5, "input_tokens": 3, "output_tokens": 2}})
    assert top == [Usage(3, 2)]
    # none reported: the response still ends with one usage frame, zeros (PROTOCOL v2)
    assert feed(c, {"type": "response.done", "response": {"id": "r2", "status": "completed"}}) == [Usage(0, 0)]


@pytest.mark.parametrize("kind", ["updated", "completed"])
def test_user_transcript_without_text_is_one_malformed_event(kind):
    c = codec()
    assert feed(c, {"type": "conversation.item.input_audio_transcription.updated", "item_id": "u",
                    "transcript": "I said "}) == [Transcript("user", "I said ", False)]
    event = f"conversation.item.input_audio_transcription.{kind}"
    assert feed(c, {"type": event, "item_id": "u"}) == [Malformed(f"{event} without transcript")]
    assert c.stats.malformed_events == 1


def test_xai_cancel_race_is_benign():
    c = codec()
    out = feed(c, {"type": "error", "error": {"type": "invalid_request_error",
                                              "message": "Cancellation failed: no active response found"}})
    assert out == [] and c.stats.counts["benign_error"] == 1


# --------------------------------------------------------------------------- properties

words = st.lists(st.text(alphabet="abcdefgh.", min_size=1, max_size=6), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(words, st.data())
def test_growing_cumulative_transcripts_join_to_the_final(ws, data):
    final = " ".join(ws)
    # any increasing sequence of prefixes, as the recogniser grows the text
    cuts = sorted(data.draw(st.lists(st.integers(1, len(final)), max_size=8)))
    c = codec()
    msgs = [{"type": "conversation.item.input_audio_transcription.updated", "item_id": "u",
             "transcript": final[:k]} for k in cuts]
    msgs.append({"type": "conversation.item.input_audio_transcription.completed", "item_id": "u",
                 "transcript": final})
    out = [e for e in feed(c, *msgs) if isinstance(e, Transcript)]
    assert [t.text for t in out if t.final] == [final]
    assert "".join(t.text for t in out if not t.final) == final




@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.builds(lambda t, v: json.dumps({"type": t, "transcript": v, "item_id": v, "usage": v, "response": v}),
              st.sampled_from(["conversation.item.input_audio_transcription.updated", "response.done", "ping",
                               "conversation.item.input_audio_transcription.completed", "error"]), json_values),
    st.builds(lambda t: json.dumps({"type": "conversation.item.input_audio_transcription.updated",
                                    "item_id": "u", "transcript": t}), st.text(max_size=12)),
    st.builds(lambda d: json.dumps({"type": "response.output_audio.delta", "item_id": "a",
                                    "delta": base64.b64encode(d).decode()}), st.binary(max_size=32)),
    st.builds(lambda i: json.dumps({"type": "response.function_call_arguments.done", "call_id": i,
                                    "name": "get_weather", "arguments": "{}"}), st.sampled_from(["c1", "c2"])),
    st.binary(max_size=30),
), max_size=30))
def test_receive_never_raises_and_calls_are_unique(messages):
    c = codec()
    out = []
    for m in messages:
        counted = c.stats.malformed_events
        got = c.receive(m)
        assert sum(type(e) is Malformed for e in got) == (c.stats.malformed_events > counted)
        out += got
    calls = [e.call_id for e in out if isinstance(e, ToolCall)]
    assert len(calls) == len(set(calls))  # exactly one tool_call per call id
    assert all(isinstance(e.text, str) for e in out if isinstance(e, Transcript))
    assert all(e.sample_rate == 24000 for e in out if isinstance(e, AudioOut))


# --------------------------------------------------------------------------- over sockets


@pytest.fixture
async def sim():
    simulator = XAISimulator(XAISimConfig(api_key="xai-sim", reply_ms=500))
    await simulator.start("127.0.0.1", 0)
    yield simulator
    await simulator.stop()


async def test_audio_crosses_without_resampling_at_16k(http, env, sim):
    env = {**env, "SPEKO_XAI_URL": sim.url, "XAI_API_KEY": "xai-sim"}
    async with run_bridge(env) as bridge:
        created = await mint(http, bridge, "xai", inputSampleRate=16000, outputSampleRate=16000, voice="ara")
        speech = tone(1.0, 16000)
        async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
            for chunk in odd_chunks(speech):
                await ws.send_bytes(chunk)
            await ws.send_str('{"type":"commit"}')
            got = await read(ws, Received(), lambda r: r.of("usage"))
    sent = sim.received[-1]
    appended = b"".join(base64.b64decode(e["audio"]) for e in sent if e["type"] == "input_audio_buffer.append")
    assert appended == speech  # byte for byte, no resampling on the way up
    assert len(got.audio) == 16000 * 2 // 2  # 500 ms produced at 16 kHz by xAI itself
    update = next(e for e in sent if e["type"] == "session.update")["session"]
    assert update["voice"] == "ara"
    assert got.text("user") == ("I spoke for 1.0 seconds.", ["I spoke for 1.0 seconds."])
    assert sim.violations == []


def test_a_new_session_mid_way_is_one_xai_session_update_naming_every_field():
    """What the OpenAI-compatible endpoint's session.update becomes for xAI
    (``XAICodec.configure``): one ``session.update`` naming every field, so what the client
    removed is removed; a voice that is not xAI's keeps the session's; the same session
    again sends nothing; hands-free turns take effect at once."""
    c = codec(voice="Rex", system_prompt="Be brief.", tools=TOOLS)
    c.start()
    assert c.configure(c.params).messages == []  # nothing changed: nothing sent
    new = SessionParams(provider="xai", model="grok-voice-latest", voice="alloy",
                        turn_detection=ServerTurns())  # no prompt, no tools: both removed
    done = c.configure(new)
    assert not done.refused and not done.redo
    (msg,) = done.messages
    update = json.loads(msg)
    assert check(update) is None and update["type"] == "session.update"
    s = update["session"]
    assert s["instructions"] == "" and s["tools"] == [] and s["voice"] == "Rex"
    assert s["turn_detection"]["type"] == "server_vad"
    assert c.configure(new).messages == []  # the codec's session is the new one now
    events = feed(c, {"type": "input_audio_buffer.speech_started", "event_id": "e1", "audio_start_ms": 0,
                      "item_id": "i1"},
                  {"type": "input_audio_buffer.speech_stopped", "event_id": "e2", "audio_end_ms": 900,
                   "item_id": "i1"})
    assert [type(e).__name__ for e in events] == ["SpeechStarted", "SpeechStopped"]
