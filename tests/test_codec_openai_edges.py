"""OpenAI codec: the end of a response and the less common events. What a user would
notice: a tool call that arrives late or never, a reply cut without its audio end, a failed
response that says nothing, text replies, usage that drops the model's audio, a first turn
that sends an empty commit. Found by ``make mutants`` (docs/testing.md)."""

from __future__ import annotations

import base64
import json

import pytest

from speko_bridge.frames import Error as ErrorFrame
from speko_bridge.frames import ToolCall, Transcript, Usage
from speko_bridge.params import SessionParams
from speko_bridge.providers.base import AudioDone, AudioOut, Fatal, Malformed, Ready
from speko_bridge.providers.openai import OpenAICodec


def codec() -> OpenAICodec:
    return OpenAICodec(SessionParams(provider="openai", model="gpt-realtime"))


def feed(c: OpenAICodec, *events) -> list:
    out = []
    for e in events:
        out += c.receive(json.dumps(e))
    return out


def types(messages) -> list[str]:
    return [json.loads(m)["type"] for m in messages]


def audio_delta(item: str = "item_A", pcm: bytes = b"\0\0" * 240) -> dict:
    return {"type": "response.output_audio.delta", "item_id": item, "delta": base64.b64encode(pcm).decode()}


def test_client_audio_goes_up_at_24k_and_the_first_turn_has_no_empty_commit():
    c = codec()
    assert c.input_rate == 24000  # the bridge resamples client audio to this
    assert types(c.commit()) == ["response.create"]  # no audio yet: nothing to commit
    # the response ends with its usage frame (zeros: none reported) and nothing else
    assert feed(c, {"type": "response.done", "response": {"status": "completed"}}) == [Usage(0, 0)]
    assert c.drain_outbound() == []  # nothing was deferred


def test_a_tool_call_reaches_the_client_as_soon_as_its_arguments_are_done():
    c = codec()
    assert feed(c, {"type": "response.function_call_arguments.done", "call_id": "call_1",
                    "name": "get_time", "arguments": '{"tz":"UTC"}'}) == [ToolCall("call_1", "get_time", '{"tz":"UTC"}')]
    assert feed(c, {"type": "response.function_call_arguments.done", "call_id": "call_2", "name": "ping"}) == [
        ToolCall("call_2", "ping", "{}")]  # no arguments: an empty object
    assert feed(c, {"type": "response.function_call_arguments.done", "name": "no_id", "arguments": "{}"}) == []


def test_tool_calls_only_listed_in_response_done_are_not_lost():
    c = codec()
    out = feed(c, {"type": "response.done", "response": {"status": "completed", "output": [
        {"type": "message", "id": "item_M"},
        {"type": "function_call", "call_id": "call_1", "name": "a", "arguments": '{"x":1}'},
        {"type": "function_call", "call_id": "call_2", "name": "b", "arguments": "{}"},
    ]}})
    assert out == [ToolCall("call_1", "a", '{"x":1}'), ToolCall("call_2", "b", "{}"), Usage(0, 0)]


def test_a_cancelled_reply_still_ends_its_audio_once():
    """A response cancelled by an interrupt ends with response.done and no audio.done."""
    c = codec()
    c.commit()
    feed(c, {"type": "response.created", "response": {"id": "r1"}}, audio_delta())
    assert feed(c, {"type": "response.done", "response": {"id": "r1", "status": "cancelled"}}) == [AudioDone(), Usage(0, 0)]
    assert feed(c, {"type": "response.output_audio.done"}) == []


def test_a_failed_response_without_details_tells_the_client():
    c = codec()
    # the error comes inside the response: the usage frame still ends it
    assert feed(c, {"type": "response.done", "response": {"status": "failed"}}) == [
        ErrorFrame("provider_error", "the provider failed the response"), Usage(0, 0)]
    assert feed(c, {"type": "response.done", "response": {"status": "failed", "status_details": {
        "type": "failed", "error": {"code": "server_error", "message": "try again"}}}}) == [
        ErrorFrame("provider_error", "try again"), Usage(0, 0)]


def test_a_response_failed_for_a_bad_key_ends_the_session_as_an_auth_failure():
    c = codec()
    assert feed(c, {"type": "response.done", "response": {"status": "failed", "status_details": {
        "error": {"code": "invalid_api_key", "message": "Incorrect API key"}}}}) == [
        Usage(0, 0), Fatal(4502, "provider_auth_failed", "Incorrect API key")]


def test_the_deferred_reply_counts_as_active():
    """After the deferred response.create goes out, a further commit waits again."""
    c = codec()
    c.commit()
    feed(c, {"type": "response.created", "response": {"id": "r1"}})
    c.audio(b"\0\0")
    c.commit()
    feed(c, {"type": "response.done", "response": {"id": "r1", "status": "completed"}})
    assert types(c.drain_outbound()) == ["response.create"]
    c.audio(b"\0\0")
    assert types(c.commit()) == ["input_audio_buffer.commit"]


@pytest.mark.parametrize("usage,expected", [
    ({"input_token_details": {"audio_tokens": 50}, "output_token_details": {"audio_tokens": 30}}, Usage(50, 30)),
    ({"output_token_details": {"audio_tokens": 30}}, Usage(0, 30)),
    ({"input_token_details": {"audio_tokens": 50}}, Usage(50, 0)),
    ({"total_tokens": 3}, Usage(0, 0)),
])
def test_usage_carries_both_directions_of_audio(usage, expected):
    assert feed(codec(), {"type": "response.done", "response": {"status": "completed", "usage": usage}}) == [expected]


@pytest.mark.parametrize("kind", ["response.output_text.delta", "response.text.delta"])
def test_text_reply_deltas_reach_the_client(kind):
    assert feed(codec(), {"type": kind, "delta": "Hi"}) == [Transcript("assistant", "Hi", False)]


def test_beta_text_done_reaches_the_client():
    assert feed(codec(), {"type": "response.text.done", "text": "Hi there"}) == [Transcript("assistant", "Hi there", True)]


def test_ready_is_announced_once():
    c = codec()
    assert feed(c, {"type": "session.updated", "session": {}}) == [Ready()]
    assert feed(c, {"type": "session.updated", "session": {}}) == []


QUIET = [
    "session.created", "conversation.created", "conversation.item.added", "conversation.item.done",
    "conversation.item.created", "conversation.item.truncated", "conversation.item.deleted",
    "conversation.item.retrieved", "conversation.item.input_audio_transcription.segment",
    "input_audio_buffer.committed", "input_audio_buffer.cleared", "input_audio_buffer.speech_stopped",
    "input_audio_buffer.timeout_triggered", "response.output_item.added", "response.output_item.done",
    "response.content_part.added", "response.content_part.done",
    "response.function_call_arguments.delta", "rate_limits.updated",
]


def test_every_documented_event_is_known_and_unknown_ones_are_counted():
    """unknown_events (CodecStats, kept for metrics and debugging) is the record of protocol
    drift: documented events must not count, each unknown one must count once."""
    c = codec()
    assert feed(c, *({"type": t} for t in QUIET)) == []
    assert c.stats.unknown_events == 0
    feed(c, {"type": "response.brand_new"}, {"type": "response.brand_new"}, {"type": "x"})
    assert c.stats.unknown_events == 3


def test_every_malformed_event_is_counted_once_each_time():
    c = codec()
    bad = [{"type": "response.output_audio_transcript.delta"}, {"type": "response.output_audio_transcript.done"},
           {"type": "response.output_audio.delta", "item_id": "i", "delta": "abcde"},
           {"type": "response.output_audio.delta", "item_id": "i"}]
    for event in bad:
        feed(c, event, event)
    c.receive(b"\xff not json")
    c.receive("{")
    assert c.stats.malformed_events == 2 * len(bad) + 2
    assert feed(c, audio_delta()) == [AudioOut(b"\0\0" * 240, 24000, "item_A")]  # still working


def test_a_response_done_without_its_response_object_still_ends_the_response():
    """A bare response.done (no response object) still closes the reply: its audio ends, the
    usage frame (zeros) marks the end, and a reply the client asked for meanwhile is sent."""
    c = codec()
    c.commit()
    feed(c, {"type": "response.created", "response": {"id": "r1"}}, audio_delta())
    c.commit()  # deferred: a response is active
    assert feed(c, {"type": "response.done"}) == [AudioDone(), Usage(0, 0)]
    assert types(c.drain_outbound()) == ["response.create"]


def test_a_failed_response_for_a_bad_key_first_ends_its_audio_and_hands_over_its_tool_calls():
    c = codec()
    c.commit()
    feed(c, {"type": "response.created", "response": {"id": "r1"}}, audio_delta())
    assert feed(c, {"type": "response.done", "response": {"id": "r1", "status": "failed", "output": [
        {"type": "function_call", "call_id": "call_1", "name": "a", "arguments": "{}"}],
        "status_details": {"error": {"code": "invalid_api_key", "message": "Incorrect API key"}}}}) == [
        AudioDone(), ToolCall("call_1", "a", "{}"), Usage(0, 0),
        Fatal(4502, "provider_auth_failed", "Incorrect API key")]


def test_the_counters_count_every_event_once_and_known_ones_by_type():
    """CodecStats (kept for metrics and debugging): ``events`` counts every readable event,
    ``counts`` each known type, ``benign_error`` the races the bridge swallows."""
    c = codec()
    benign = {"type": "error", "error": {"code": "response_cancel_not_active", "message": "no response"}}
    assert feed(c, {"type": "session.created"}, audio_delta(), audio_delta(), benign, benign,
                {"type": "response.brand_new"}) == [AudioOut(b"\0\0" * 240, 24000, "item_A")] * 2
    assert c.stats.events == 6
    assert c.stats.counts == {"session.created": 1, "response.output_audio.delta": 2, "error": 2,
                              "benign_error": 2}


def test_an_event_nested_too_deep_to_read_is_reported_as_unreadable():
    """A hostile upstream's deep nesting (in a field the codec does not read) is one
    Malformed event whose reason names what went wrong, and the codec goes on."""
    c = codec()
    deep = '{"type": "session.updated", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert c.receive(deep) == [Malformed("unreadable event: RecursionError")]
    assert feed(c, {"type": "session.updated"}) == [Ready()]
