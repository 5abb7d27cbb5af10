"""The OpenAI codec, sans-IO: recorded sequences from providers.md in, exact frames out;
everything it emits validated against the official ``openai`` types; properties over any
sequence of provider events."""

from __future__ import annotations

import base64
import binascii
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speko_bridge.frames import Error as ErrorFrame
from speko_bridge.frames import ToolCall, Transcript, Usage
from speko_bridge.params import SessionParams, ToolSpec
from speko_bridge.providers.base import AudioDone, AudioOut, Fatal, Malformed, Ready
from speko_bridge.providers.openai import OpenAICodec
from speko_bridge.simulator.openai import client_event_checker

from .strategies import json_values

check = client_event_checker()
TOOLS = [ToolSpec(name="get_weather", description="Get weather",
                  parameters={"type": "object", "properties": {"city": {"type": "string"}}})]


def codec(**kw) -> OpenAICodec:
    return OpenAICodec(SessionParams(provider="openai", model="gpt-realtime", **kw))


def valid(messages):
    for m in messages:
        problem = check(json.loads(m))
        assert problem is None, problem
    return [json.loads(m) for m in messages]


def feed(c: OpenAICodec, *events) -> list:
    out = []
    for e in events:
        out += c.receive(json.dumps(e))
    return out


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_checker_rejects_misspelled_fields():
    assert check({"type": "input_audio_buffer.append", "data": "AAA="}) is not None
    assert check({"type": "session.update", "session": {"type": "realtime", "voice": "marin"}}) is not None
    assert check({"type": "input_audio_buffer.append", "audio": "AAA="}) is None


def test_session_update_is_ga_and_valid():
    c = codec(voice="cedar", system_prompt="Be brief.", temperature=0.7, tools=TOOLS)
    (update,) = valid(c.start())
    s = update["session"]
    assert s["type"] == "realtime" and s["model"] == "gpt-realtime" and s["output_modalities"] == ["audio"]
    assert s["instructions"] == "Be brief." and s["audio"]["output"]["voice"] == "cedar"
    assert s["audio"]["input"]["turn_detection"] is None
    assert s["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert s["tools"][0]["type"] == "function" and s["tool_choice"] == "auto"
    assert "temperature" not in json.dumps(s)  # GA does not accept it
    assert codec().start() and valid(codec().start())[0]["session"]["audio"]["output"]["voice"] == "marin"


def test_client_intents_are_valid_events():
    c = codec()
    feed(c, {"type": "session.updated", "session": {}})
    (append,) = valid(c.audio(b"\x01\x02" * 10))
    assert base64.b64decode(append["audio"]) == b"\x01\x02" * 10
    assert [e["type"] for e in valid(c.commit())] == ["input_audio_buffer.commit", "response.create"]
    feed(c, {"type": "response.created", "response": {"id": "resp_1"}})
    # a second commit while a response is active defers response.create until it is done
    c.audio(b"\0\0")
    assert [e["type"] for e in valid(c.commit())] == ["input_audio_buffer.commit"]
    feed(c, {"type": "response.done", "response": {"id": "resp_1", "status": "completed"}})
    assert [e["type"] for e in valid(c.drain_outbound())] == ["response.create"]
    assert c.drain_outbound() == []
    # commit without audio: no empty commit upstream
    feed(c, {"type": "response.done", "response": {"status": "completed"}})
    assert [e["type"] for e in valid(c.commit())] == ["response.create"]
    item = valid(c.tool_result("call_1", '{"ok":true}'))
    assert item[0]["item"] == {"type": "function_call_output", "call_id": "call_1", "output": '{"ok":true}'}


def test_a_refused_response_create_does_not_hold_up_the_next_turn():
    c = codec()
    feed(c, {"type": "session.updated", "session": {}})
    c.audio(b"\0\0" * 2400)
    create = valid(c.commit())[-1]
    assert create["type"] == "response.create" and create["event_id"]
    # an error about something else leaves the request standing: the next turn waits for it
    assert feed(c, {"type": "error", "error": {"type": "invalid_request_error", "code": "invalid_value",
                                               "message": "other", "event_id": "evt_other"}})
    c.audio(b"\0\0")
    assert [e["type"] for e in valid(c.commit())] == ["input_audio_buffer.commit"]
    # the service refuses the request itself: no response is coming, the deferred turn goes now
    out = feed(c, {"type": "error", "error": {"type": "invalid_request_error", "code": "invalid_value",
                                              "message": "refused", "event_id": create["event_id"]}})
    assert out == [ErrorFrame("provider_error", "refused")]
    (again,) = valid(c.drain_outbound())
    assert again["type"] == "response.create" and again["event_id"] != create["event_id"]
    feed(c, {"type": "error", "error": {"code": "invalid_value", "message": "no", "event_id": again["event_id"]}})
    assert [e["type"] for e in valid(c.commit())] == ["response.create"]  # and a later turn asks again


def test_tool_call_turn_from_providers_md():
    c = codec(tools=TOOLS)
    seq = [
        {"type": "session.created", "event_id": "event_A1", "session": {"type": "realtime", "id": "sess_C9x"}},
        {"type": "session.updated", "event_id": "event_A2", "session": {}},
        {"type": "input_audio_buffer.committed", "event_id": "event_A5", "previous_item_id": None, "item_id": "item_U1"},
        {"type": "response.created", "event_id": "event_A7", "response": {"id": "resp_R1", "object": "realtime.response", "status": "in_progress", "output": []}},
        {"type": "conversation.item.input_audio_transcription.completed", "event_id": "event_A9", "item_id": "item_U1", "content_index": 0, "transcript": "What's the weather in Paris?", "usage": {"type": "duration", "seconds": 2.0}},
        {"type": "response.output_item.added", "event_id": "event_B1", "response_id": "resp_R1", "output_index": 0, "item": {"id": "item_F1", "type": "function_call", "status": "in_progress", "name": "get_weather", "call_id": "call_K7", "arguments": ""}},
        {"type": "response.function_call_arguments.delta", "event_id": "event_B2", "response_id": "resp_R1", "item_id": "item_F1", "output_index": 0, "call_id": "call_K7", "delta": "{\"city\":\"Pa"},
        {"type": "response.function_call_arguments.done", "event_id": "event_B3", "response_id": "resp_R1", "item_id": "item_F1", "output_index": 0, "call_id": "call_K7", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
        {"type": "response.done", "event_id": "event_B5", "response": {"id": "resp_R1", "object": "realtime.response", "status": "completed", "output": [{"id": "item_F1", "type": "function_call", "call_id": "call_K7", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}], "usage": {"total_tokens": 310, "input_tokens": 290, "output_tokens": 20, "input_token_details": {"text_tokens": 240, "audio_tokens": 50, "cached_tokens": 0, "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0}}, "output_token_details": {"text_tokens": 20, "audio_tokens": 0}}}},
    ]
    assert feed(c, *seq) == [
        Ready(),
        Transcript("user", "What's the weather in Paris?", True),
        ToolCall("call_K7", "get_weather", '{"city":"Paris"}'),
        Usage(50, 0),
    ]
    assert c.stats.unknown_events == 0 and c.stats.malformed_events == 0


@pytest.mark.parametrize("beta", [False, True])
def test_spoken_reply_ga_and_beta_names(beta):
    audio = b"\x10\x00" * 2400
    name = {
        "delta": "response.audio.delta" if beta else "response.output_audio.delta",
        "done": "response.audio.done" if beta else "response.output_audio.done",
        "tdelta": "response.audio_transcript.delta" if beta else "response.output_audio_transcript.delta",
        "tdone": "response.audio_transcript.done" if beta else "response.output_audio_transcript.done",
    }
    ids = {"response_id": "resp_R2", "item_id": "item_A1", "output_index": 0, "content_index": 0}
    c = codec()
    out = feed(
        c,
        {"type": "response.created", "response": {"id": "resp_R2"}},
        {"type": name["tdelta"], **ids, "delta": "It's 21 degrees"},
        {"type": name["delta"], **ids, "delta": b64(audio)},
        {"type": name["done"], **ids},
        {"type": name["tdone"], **ids, "transcript": "It's 21 degrees in Paris."},
        {"type": "response.done", "response": {"id": "resp_R2", "status": "completed"}},
    )
    assert out == [
        Transcript("assistant", "It's 21 degrees", False),
        AudioOut(audio, 24000, "item_A1"),
        AudioDone(),
        Transcript("assistant", "It's 21 degrees in Paris.", True),
        Usage(0, 0),  # protocol v2: a usage ends every response, zeros when none was reported
    ]


def test_interrupt_truncates_at_what_the_client_heard():
    c = codec()
    c.commit()
    feed(c, {"type": "response.created", "response": {"id": "resp_1"}},
         *[{"type": "response.output_audio.delta", "item_id": "item_X", "delta": b64(b"\0" * 4800)}] * 10)
    events = valid(c.interrupt(400))
    assert events[0] == {"type": "response.cancel", "response_id": "resp_1"}
    assert events[1] == {"type": "conversation.item.truncate", "item_id": "item_X", "content_index": 0,
                         "audio_end_ms": 400}
    c2 = codec()
    c2.commit()
    feed(c2, {"type": "response.created", "response": {"id": "r"}},
         {"type": "response.output_audio.delta", "item_id": "item_Y", "delta": b64(b"\0" * 48000)})
    assert valid(c2.interrupt(5000))[1]["audio_end_ms"] == 1000  # never past the audio received
    assert codec().interrupt(100) == []  # nothing active: nothing sent


@pytest.mark.parametrize("code,expected", [
    ("invalid_api_key", Fatal(4502, "provider_auth_failed", "m")),
    ("insufficient_quota", Fatal(4502, "provider_error", "m")),
    ("session_expired", Fatal(4500, "provider_unavailable", "m")),
    ("invalid_value", ErrorFrame("provider_error", "m")),
])
def test_error_mapping(code, expected):
    c = codec()
    assert feed(c, {"type": "error", "error": {"type": "invalid_request_error", "code": code, "message": "m"}}) == [expected]


def test_benign_races_are_swallowed_and_failed_model_is_fatal():
    c = codec()
    assert feed(c, {"type": "error", "error": {"type": "invalid_request_error",
                                               "code": "response_cancel_not_active", "message": "x"}}) == []
    out = feed(c, {"type": "response.done", "response": {"status": "failed", "status_details": {
        "type": "failed", "error": {"type": "invalid_request_error", "code": "model_not_found",
                                    "message": "The model `x` does not exist"}}}})
    assert out[-1] == Fatal(4502, "provider_error", "The model `x` does not exist")


# --------------------------------------------------------------------------- properties

text = st.text(max_size=12)
ids = st.sampled_from(["item_1", "item_2", "call_1", "call_2", None])
good_events = st.one_of(
    st.builds(lambda d, i: {"type": "response.output_audio.delta", "item_id": i, "delta": b64(d)}, st.binary(max_size=64), ids),
    st.builds(lambda d: {"type": "response.output_audio_transcript.delta", "delta": d}, text),
    st.builds(lambda c, a: {"type": "response.function_call_arguments.done", "call_id": c, "name": "f", "arguments": a}, ids, text),
    st.builds(lambda c: {"type": "response.done", "response": {"status": "completed", "output": [
        {"type": "function_call", "call_id": c, "name": "f", "arguments": "{}"}]}}, ids),
    st.just({"type": "response.output_audio.done"}),
    st.just({"type": "session.updated", "session": {}}),
)
garbage = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=40),
    json_values.map(json.dumps),
    st.builds(lambda t, v: json.dumps({"type": t, "delta": v, "response": v, "error": v, "item_id": v}),
              st.sampled_from(["response.output_audio.delta", "response.done", "error", "session.updated",
                               "conversation.item.input_audio_transcription.completed", "x"]), json_values),
    st.builds(lambda s: json.dumps({"type": "response.output_audio.delta", "delta": s}), st.text(max_size=20)),
)


@pytest.mark.parametrize("message, reason", [
    ("{not json", "not a JSON event of the expected shape"),
    ('{"type": "response.output_audio.delta", "delta": 5}', "not a JSON event of the expected shape"),
    ('{"type": "response.output_audio.delta", "item_id": "i"}', "response.output_audio.delta without delta"),
    ('{"type": "response.output_audio.delta", "delta": "A"}', "response.output_audio.delta delta is not base64"),
    ('{"type": "response.output_audio_transcript.delta"}', "response.output_audio_transcript.delta without delta"),
    ('{"type": "response.output_audio_transcript.done"}', "response.output_audio_transcript.done without text"),
    ('{"type": "conversation.item.input_audio_transcription.delta"}',
     "conversation.item.input_audio_transcription.delta without delta"),
    ('{"type": "conversation.item.input_audio_transcription.completed"}',
     "conversation.item.input_audio_transcription.completed without transcript"),
    (b'{"type": "response.output_audio_transcript.delta", "delta": "\xff"}',  # not UTF-8
     "not a JSON event of the expected shape"),
])
def test_unreadable_events_become_one_malformed_event_and_are_counted(message, reason):
    c = codec()
    assert c.receive(message) == [Malformed(reason)]
    assert c.stats.malformed_events == 1
    # and the codec goes on: the next good event is read as usual
    assert feed(c, {"type": "session.updated", "session": {}}) == [Ready()]
    assert c.stats.malformed_events == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(good_events.map(json.dumps), garbage), max_size=30))
def test_receive_never_raises_and_invariants_hold(messages):
    c = codec()
    events = []
    for m in messages:
        counted = c.stats.malformed_events
        got = c.receive(m)
        # an unreadable message is counted and reported, once; a readable one is neither
        assert sum(type(e) is Malformed for e in got) == (c.stats.malformed_events > counted)
        events += got
    calls = [e.call_id for e in events if isinstance(e, ToolCall)]
    assert len(calls) == len(set(calls))  # one tool_call per call id
    # audio out is exactly the decodable deltas, in order: nothing dropped or duplicated
    expected_audio = b""
    for m in messages:
        try:
            e = json.loads(m)
        except (ValueError, UnicodeDecodeError):
            continue
        if (isinstance(e, dict) and e.get("type") == "response.output_audio.delta"
                and isinstance(e.get("delta"), str) and isinstance(e.get("item_id"), (str, type(None)))
                and all(isinstance(e.get(k), (str, type(None))) for k in ("transcript", "text", "call_id", "name", "arguments"))
                and all(e.get(k) is None or isinstance(e.get(k), dict) for k in ("response", "error"))):
            try:
                expected_audio += binascii.a2b_base64(e["delta"])
            except (binascii.Error, ValueError):
                pass
    got = b"".join(e.pcm for e in events if isinstance(e, AudioOut))
    assert got == expected_audio


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=10), max_size=10), st.lists(st.binary(max_size=100), max_size=10),
       st.sampled_from(["assistant", "user"]))
def test_deltas_join_to_final_and_audio_is_preserved(words, chunks, role):
    c = codec()
    delta_t, done_t, field = {
        "assistant": ("response.output_audio_transcript.delta", "response.output_audio_transcript.done", "transcript"),
        "user": ("conversation.item.input_audio_transcription.delta",
                 "conversation.item.input_audio_transcription.completed", "transcript"),
    }[role]
    msgs = [{"type": delta_t, "item_id": "i", "delta": w} for w in words]
    msgs += [{"type": "response.output_audio.delta", "item_id": "a", "delta": b64(ch)} for ch in chunks]
    msgs.append({"type": done_t, "item_id": "i", field: "".join(words)})
    out = feed(c, *msgs)
    ts = [e for e in out if isinstance(e, Transcript) and e.role == role]
    assert "".join(t.text for t in ts if not t.final) == [t.text for t in ts if t.final][0]
    assert b"".join(e.pcm for e in out if isinstance(e, AudioOut)) == b"".join(chunks)
