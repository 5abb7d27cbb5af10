"""The client protocol codecs, sans-IO: client messages in, intents out; provider frames in,
the messages that client hears out. No socket, no server: what the endpoints say is decided
here, and the endpoint tests (test_bridge, test_openai_compat) check the same over real sockets.

Every OpenAI server event the compatible codec writes is validated against the ``openai``
package's own ``RealtimeServerEvent`` union, which is what the Agents SDK validates with."""

from __future__ import annotations

import base64
import json

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.realtime import RealtimeServerEvent

from speko_bridge.clientproto.base import (
    AudioChunk,
    Cancel,
    FlushAudio,
    Invalid,
    Reply,
    Respond,
    SendAudio,
    TextMessage,
    ToolOutput,
)
from speko_bridge.clientproto.native import NativeCodec
from speko_bridge.clientproto.openai_compat import OpenAICompatCodec
from speko_bridge.frames import Error, Speech, ToolCall, Transcript, Usage
from speko_bridge.params import SessionParams, ToolSpec

from .strategies import json_values

SERVER_EVENT = pydantic.TypeAdapter(RealtimeServerEvent)
TOOLS = [ToolSpec(name="get_weather", parameters={"type": "object", "properties": {}})]


def native(**kw) -> NativeCodec:
    return NativeCodec(SessionParams(provider="openai", model="gpt-realtime", **kw), "sess_0123456789", "openai")


def compat(provider: str = "google", **kw) -> OpenAICompatCodec:
    return OpenAICompatCodec(SessionParams(provider=provider, model="m", tools=TOOLS, **kw),
                             "sess_0123456789", provider, 1_900_000_000)


def server_events(items) -> list[dict]:
    """The JSON of every text item (audio chunks written as the codec writes them), each
    validated against the openai package's server event types."""
    out = []
    for item in items:
        if isinstance(item, (Reply, Invalid)):
            text = item.message if isinstance(item, Reply) else item.answer
        elif isinstance(item, TextMessage):
            text = item.text
        else:
            continue
        event = json.loads(text)
        SERVER_EVENT.validate_python(event)
        out.append(event)
    return out


# --------------------------------------------------------------------------- native protocol


def test_native_binary_is_audio_and_commit_flushes_then_asks_for_a_response():
    c = native()
    assert c.receive_bytes(b"\x01\x02\x03") == [SendAudio(b"\x01\x02\x03")]
    assert c.receive_text('{"type":"commit"}') == [FlushAudio(), Respond()]
    assert c.receive_text('{"type":"interrupt"}') == [Cancel()]
    assert c.receive_text('{"type":"tool_result","callId":"c1","output":"{}"}') == [ToolOutput("c1", "{}")]


@pytest.mark.parametrize("text", ['{"type":"nope"}', "not json", '{"type":"commit","x":1}',
                                  '{"type":"commit","type":"interrupt"}', '{"type":"tool_result"}',
                                  "[" * 100_000, "[" * 100_000 + "]" * 100_000,
                                  '{"type":"tool_result","callId":"c","output":' + "[" * 100_000 + "]" * 100_000 + "}",
                                  '{"type":"commit","x":' + "[" * 100_000 + "]" * 100_000 + "}"])
def test_native_bad_message_is_invalid_with_an_error_frame(text):
    (intent,) = native().receive_text(text)
    assert isinstance(intent, Invalid)
    frame = json.loads(intent.answer)
    assert frame["type"] == "error" and frame["code"] == "invalid_message"


def test_native_frames_and_audio_on_the_wire():
    c = native(output_sample_rate=16000)
    assert c.output_rate == 16000 and c.input_rate == 24000
    (msg,) = c.frame(Transcript("assistant", "hi", False))
    assert json.loads(msg.text) == {"type": "transcript", "role": "assistant", "text": "hi", "final": False}
    (chunk,) = c.audio("item1", b"\x00\x01")
    assert c.audio_message(chunk) == b"\x00\x01"
    assert [json.loads(m)["type"] for m in c.final(4500, "provider_error", "gone")] == ["error", "close"]
    assert [json.loads(m) for m in c.final(1000, None, "bye")] == [{"type": "close", "code": 1000, "reason": "bye"}]


def test_native_token_is_the_first_subprotocol():
    h = NativeCodec.handshake(["tok", "other"], {})
    assert (h.token, h.subprotocol) == ("tok", "tok")
    assert NativeCodec.handshake([], {}).token is None


# --------------------------------------------------------------------------- OpenAI-compatible


def test_compat_token_from_bearer_header_or_insecure_subprotocol():
    h = OpenAICompatCodec.handshake(["realtime"], {"authorization": "Bearer tok"})
    assert (h.token, h.subprotocol) == ("tok", "realtime")
    h = OpenAICompatCodec.handshake(["realtime", "openai-insecure-api-key.tok2"], {})
    assert (h.token, h.subprotocol) == ("tok2", "realtime")
    h = OpenAICompatCodec.handshake(["openai-insecure-api-key.tok3"], {})
    assert (h.token, h.subprotocol) == ("tok3", "openai-insecure-api-key.tok3")
    assert OpenAICompatCodec.handshake([], {"authorization": "Bearer "}).token is None


def test_compat_opening_is_a_valid_session_created_with_the_minted_tools():
    (created,) = server_events(compat().opening())
    assert created["type"] == "session.created"
    assert [t["name"] for t in created["session"]["tools"]] == ["get_weather"]
    assert created["session"]["expires_at"] == 1_900_000_000


def test_compat_turn_append_commit_response_then_tool_output():
    c = compat()
    pcm = b"\x01\x00" * 2400
    assert c.receive_text(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": base64.b64encode(pcm).decode()})) == [SendAudio(pcm)]
    flush, *acks = c.receive_text('{"type":"input_audio_buffer.commit"}')
    assert flush == FlushAudio()
    assert [e["type"] for e in server_events(acks)] == [
        "input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"]
    assert c.receive_text('{"type":"response.create"}') == [Respond()]
    # the model calls a tool: the response carries the call, and ends with usage
    events = server_events(c.frame(ToolCall("call_1", "get_weather", '{"city":"Paris"}'))
                           + c.frame(Usage(10, 0)))
    assert [e["type"] for e in events] == [
        "response.created", "response.output_item.added", "response.function_call_arguments.done",
        "response.output_item.done", "response.done"]
    assert events[2]["arguments"] == '{"city":"Paris"}' and events[2]["call_id"] == "call_1"
    # the output goes to the provider, which goes on by itself: the client's response.create
    # that follows (as OpenAI clients send) asks for nothing more
    *acks, tool = c.receive_text(json.dumps({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": "call_1", "output": "sunny"}}))
    assert tool == ToolOutput("call_1", "sunny") and len(server_events(acks)) == 2
    assert c.receive_text('{"type":"response.create"}') == []
    assert c.receive_text('{"type":"response.create"}') == [Respond()]


def test_compat_reply_audio_and_transcripts_in_openai_order():
    c = compat()
    items = (c.frame(Transcript("user", "hello", True)) + c.audio("a1", b"\x00\x00" * 10)
             + c.frame(Transcript("assistant", "Hi ", False)) + c.audio("a1", b"\x00\x00" * 10)
             + c.frame(Transcript("assistant", "Hi there", True)) + c.frame(Usage(3, 7)))
    chunks = [i for i in items if isinstance(i, AudioChunk)]
    deltas = [json.loads(c.audio_message(ch)) for ch in chunks]
    for d in deltas:
        SERVER_EVENT.validate_python(d)
    assert {d["type"] for d in deltas} == {"response.output_audio.delta"}
    events = server_events(items)
    types = [e["type"] for e in events]
    assert types == [
        "conversation.item.input_audio_transcription.completed", "response.created",
        "response.output_item.added", "conversation.item.added", "response.content_part.added",
        "response.output_audio_transcript.delta", "response.output_audio.done",
        "response.output_audio_transcript.done", "response.content_part.done",
        "response.output_item.done", "conversation.item.done", "response.done"]
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["usage"]["output_tokens"] == 7
    assert events[7]["transcript"] == "Hi there"
    assert deltas[0]["item_id"] == events[2]["item"]["id"] == done["output"][0]["id"]


def test_compat_cancel_ends_the_response_cancelled_and_the_item_incomplete():
    c = compat()
    items = c.audio("a1", b"\x00\x00" * 10)
    assert c.receive_text('{"type":"response.cancel"}') == [Cancel()]
    events = server_events(items + c.frame(Usage(0, 0)))
    done = events[-1]["response"]
    assert done["status"] == "cancelled" and done["status_details"]["reason"] == "client_cancelled"
    assert [e for e in events if e["type"] == "response.output_item.done"][0]["item"]["status"] == "incomplete"
    # the next response is a fresh one, completed
    events = server_events(c.audio("a2", b"\x00\x00") + c.frame(Usage(0, 0)))
    assert events[-1]["response"]["status"] == "completed"


@pytest.mark.parametrize("event, code", [
    ({"type": "input_audio_buffer.commit"}, "input_audio_buffer_commit_empty"),
    ({"type": "input_audio_buffer.append", "audio": "***"}, "invalid_value"),
    ({"type": "input_audio_buffer.append", "audio": 5}, "invalid_value"),
    ({"type": "no.such.event"}, "invalid_value"),
    ({"no": "type"}, "invalid_value"),
    ({"type": "session.update", "session": 5}, "invalid_value"),
    ({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": 1}},
     "invalid_value"),
])
def test_compat_bad_events_get_an_openai_error_event(event, code):
    (intent,) = compat().receive_text(json.dumps({**event, "event_id": "evt_1"}))
    assert isinstance(intent, Invalid)
    (err,) = server_events([intent])
    assert err["error"]["code"] == code
    if "type" in event:
        assert err["error"]["event_id"] == "evt_1"


@pytest.mark.parametrize("provider", ["google", "openai"])
@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000,
                                  '{"type":"session.update","session":' + "[" * 100_000 + "]" * 100_000 + "}",
                                  '{"type":"x","tools":' + "{\"a\":" * 50_000 + "1" + "}" * 50_000 + "}"])
def test_compat_deeply_nested_json_never_raises(provider, text):
    (intent,) = compat(provider).receive_text(text)
    if provider == "openai":  # forwarded as it is: OpenAI answers what it cannot read
        assert intent.message == text
    else:
        (err,) = server_events([intent])
        assert err["error"]["code"] == "invalid_json"


def test_compat_with_openai_behind_it_forwards_both_ways():
    c = compat("openai")
    assert c.opening() == []
    (fwd,) = c.receive_text('{"type":"response.create"}')
    assert fwd.reply_due and fwd.message == '{"type":"response.create"}'
    assert not c.receive_text('{"type":"input_audio_buffer.append","audio":""}')[0].reply_due
    assert c.raw_forwarder()('{"type":"x"}') == TextMessage('{"type":"x"}')
    assert c.frame(Usage(1, 1)) == [] and c.audio("a", b"\x00\x00") == []
    start = c.upstream_start(['{"type":"session.update","session":{"audio":{"input":{"turn_detection":null}}}}'])
    assert "turn_detection" not in json.loads(start[0])["session"]["audio"]["input"]


def test_compat_final_message_is_an_error_event_with_the_bridge_code():
    (err,) = server_events([TextMessage(m) for m in compat().final(4500, "provider_error", "gone")])
    assert err["error"]["code"] == "provider_error" and err["error"]["type"] == "server_error"
    assert compat().final(1000, None, "bye") == []


# --------------------------------------------------------------------------- properties

client_events = st.one_of(
    st.text(max_size=40),
    json_values.map(json.dumps),
    st.builds(lambda t, extra: json.dumps({"type": t, **extra}),
              st.sampled_from(["session.update", "input_audio_buffer.append", "input_audio_buffer.commit",
                               "input_audio_buffer.clear", "response.create", "response.cancel",
                               "conversation.item.create", "conversation.item.truncate",
                               "conversation.item.retrieve", "output_audio_buffer.clear"]),
              st.dictionaries(st.sampled_from(["session", "audio", "item", "response", "event_id",
                                               "item_id"]), json_values, max_size=3)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(client_events, max_size=12))
def test_compat_never_raises_on_any_client_event_and_every_answer_is_a_valid_event(texts):
    c = compat()
    for text in texts:
        for intent in c.receive_text(text):
            if isinstance(intent, (Reply, Invalid)):
                server_events([intent])


def _frames_and_cancels():
    frame = st.one_of(
        st.builds(lambda i, n: ("audio", f"a{i}", b"\x00\x00" * n), st.integers(0, 2), st.integers(1, 4)),
        st.builds(lambda role, final: ("frame", Transcript(role, "w ", final)),
                  st.sampled_from(["user", "assistant"]), st.booleans()),
        st.builds(lambda i: ("frame", ToolCall(f"c{i}", "get_weather", "{}")), st.integers(0, 3)),
        st.just(("frame", Usage(1, 2))),
        st.just(("frame", Error("provider_error", "oops"))),
        st.sampled_from([("frame", Speech("started")), ("frame", Speech("stopped"))]),
        st.just(("cancel",)),
        st.just(("barge_in",)),
    )
    return st.lists(frame, max_size=25)


@settings(max_examples=300, deadline=None)
@given(_frames_and_cancels())
def test_compat_every_response_that_starts_is_closed_once_and_items_pair_up(steps):
    c = compat()
    items = []
    for step in steps:
        if step[0] == "audio":
            items += c.audio(step[1], step[2])
        elif step[0] == "frame":
            items += c.frame(step[1])
        elif step[0] == "barge_in":  # the provider heard the user over the reply
            items += c.cancelled(barge_in=True)
        else:
            c.receive_text('{"type":"response.cancel"}')
    items += c.frame(Usage(0, 0))  # every provider response ends with one usage
    events = server_events(items)
    open_response = None
    open_items: set[str] = set()
    for e in events:
        if e["type"] == "response.created":
            assert open_response is None, "a response started inside another"
            open_response = e["response"]["id"]
        elif e["type"] == "response.done":
            assert e["response"]["id"] == open_response
            assert not open_items, f"items left open at response.done: {open_items}"
            open_response = None
        elif e["type"] == "response.output_item.added":
            assert e["response_id"] == open_response
            open_items.add(e["item"]["id"])
        elif e["type"] == "response.output_item.done":
            open_items.remove(e["item"]["id"])
    assert open_response is None
    for chunk in (i for i in items if isinstance(i, AudioChunk)):
        SERVER_EVENT.validate_python(json.loads(c.audio_message(chunk)))
