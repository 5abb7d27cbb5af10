"""Hostile or broken provider input into every codec: truncated events, wrong types, huge
and invalid base64. A codec never raises, keeps every decodable audio byte, and the bridge
turns a provider that only sends garbage into a 4500 (see test_faults.py for that over a
real socket)."""

from __future__ import annotations

import base64
import binascii
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speko_bridge.params import SessionParams
from speko_bridge.providers import get_provider
from speko_bridge.providers.base import AudioOut, Malformed

from .strategies import json_values
from .wsclient import MODELS


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def openai_audio(b64: str) -> str:
    return json.dumps({"type": "response.output_audio.delta", "response_id": "resp_1", "item_id": "item_1",
                       "output_index": 0, "content_index": 0, "delta": b64})


def google_audio(b64: str) -> bytes:
    return json.dumps({"serverContent": {"modelTurn": {"parts": [
        {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": b64}}]}}}).encode()


AUDIO_EVENT = {"openai": openai_audio, "xai": openai_audio, "google": google_audio}

#: A well-formed reply per provider (from docs/providers.md), cut anywhere below.
REPLY = {
    "openai": [
        {"type": "session.updated", "session": {"type": "realtime"}},
        {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress", "output": []}},
        {"type": "response.output_audio_transcript.delta", "item_id": "item_1", "delta": "Hello"},
        {"type": "response.function_call_arguments.done", "call_id": "call_1", "name": "f", "arguments": "{}"},
        {"type": "response.done", "response": {"id": "resp_1", "status": "completed", "output": [], "usage": {
            "input_token_details": {"audio_tokens": 3}, "output_token_details": {"audio_tokens": 7}}}},
    ],
    "xai": [
        {"type": "session.updated", "session": {}},
        {"type": "response.created", "response": {"id": "resp_1"}},
        {"type": "response.output_audio_transcript.delta", "delta": "Hello"},
        {"type": "response.done", "response": {"id": "resp_1", "usage": {"input_tokens": 3, "output_tokens": 7}}},
    ],
    "google": [
        {"setupComplete": {}},
        {"serverContent": {"outputTranscription": {"text": "Hello"}}},
        {"toolCall": {"functionCalls": [{"id": "c1", "name": "f", "args": {"a": 1}}]}},
        {"serverContent": {"turnComplete": True}, "usageMetadata": {"totalTokenCount": 10}},
    ],
}


def codec(provider: str):
    return get_provider(provider).codec(SessionParams(provider=provider, model=MODELS[provider]))


def encode(provider: str, event) -> str | bytes:
    text = json.dumps(event)
    return text.encode() if provider == "google" else text


@st.composite
def hostile(draw, provider: str):
    """One upstream message: a truncated or type-mangled real event, or audio whose base64 is
    huge, invalid or empty. Returns (message, decodable audio bytes or None)."""
    kind = draw(st.sampled_from(["truncated", "mangled", "huge", "invalid_b64", "garbage", "good"]))
    reply = REPLY[provider]
    if kind == "truncated":
        full = encode(provider, draw(st.sampled_from(reply)))
        return full[: draw(st.integers(0, len(full) - 1))], None
    if kind == "mangled":
        event = json.loads(json.dumps(draw(st.sampled_from(reply))))
        key = draw(st.sampled_from(sorted(event)))
        event[key] = draw(json_values)
        return encode(provider, event), None
    if kind == "huge":
        pcm = bytes(draw(st.integers(1, 255)) for _ in range(4)) * draw(st.integers(200_000, 300_000))
        return AUDIO_EVENT[provider](_b64(pcm)), pcm
    if kind == "invalid_b64":
        bad = draw(st.sampled_from(["!!!!", "A", "AB=C", "====", "\u00e9\u00e9\u00e9\u00e9", "QUJD" * 3 + "*"]))
        try:  # the codecs decode as binascii does by default: characters outside the alphabet skipped
            return AUDIO_EVENT[provider](bad), binascii.a2b_base64(bad)
        except (binascii.Error, ValueError):
            return AUDIO_EVENT[provider](bad), None
    if kind == "garbage":
        return draw(st.one_of(st.binary(max_size=64), st.text(max_size=64))), None
    pcm = draw(st.binary(max_size=256))
    return AUDIO_EVENT[provider](_b64(pcm)), pcm


@pytest.mark.parametrize("provider", ["openai", "google", "xai"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_hostile_upstream_never_raises_and_keeps_every_decodable_audio_byte(provider, data):
    c = codec(provider)
    messages = data.draw(st.lists(hostile(provider), max_size=12))
    out = []
    for message, _ in messages:
        counted = c.stats.malformed_events
        got = c.receive(message)
        # an unreadable message is reported as one Malformed event (and counted); no other is
        assert sum(type(e) is Malformed for e in got) == (c.stats.malformed_events > counted)
        out += got
    heard = b"".join(e.pcm for e in out if isinstance(e, AudioOut))
    expected = b"".join(pcm for _, pcm in messages if pcm is not None)
    # odd audio bytes are held by the resampler, not the codec: the codec keeps them all
    assert heard == expected
    # every message is either read or counted as malformed (the metric operators watch)
    assert c.stats.malformed_events + c.stats.events >= len(messages)


#: Deep enough to pass any recursion limit (issue 24, finding 9: it used to raise out of
#: ``receive()`` and end the session 1011).
DEEP = 100_000
DEEP_VALUES = {"arrays": "[" * DEEP + "]" * DEEP, "objects": '{"a":' * DEEP + "1" + "}" * DEEP}


def _with_deep_field(provider: str, event: dict, key: str, deep: str) -> str | bytes:
    text = json.dumps({**event, key: "__DEEP__"}).replace('"__DEEP__"', deep)
    return text.encode() if provider == "google" else text


@pytest.mark.parametrize("shape", sorted(DEEP_VALUES))
@pytest.mark.parametrize("provider", ["openai", "google", "xai"])
def test_deeply_nested_upstream_input_is_malformed_not_an_exception(provider, shape):
    deep = DEEP_VALUES[shape]
    for event in REPLY[provider]:
        # in a field no codec reads, and in place of each field it does read
        for key in ["zz_unknown", *event]:
            c = codec(provider)
            events = c.receive(_with_deep_field(provider, event, key, deep))
            assert [type(e) for e in events] == [Malformed], (event, key)
            if key == "zz_unknown":  # where a known field is, its wrong type may be seen first
                assert "RecursionError" in events[0].reason
            assert c.stats.malformed_events == 1
            # the codec is still usable: the next audio is heard
            heard = [e.pcm for e in c.receive(AUDIO_EVENT[provider](_b64(b"\1\2"))) if isinstance(e, AudioOut)]
            assert heard == [b"\1\2"]


def test_deeply_nested_tool_output_from_the_client_does_not_raise():
    """Gemini wants a tool's output as an object, so its codec parses the client's text:
    text nested too deep to parse is sent wrapped, like any output that is not an object."""
    c = codec("google")
    c.receive(json.dumps({"toolCall": {"functionCalls": [{"id": "c1", "name": "f", "args": {}}]}}).encode())
    deep = DEEP_VALUES["arrays"]
    [sent] = c.tool_result("c1", deep)
    reply = json.loads(sent)["toolResponse"]["functionResponses"][0]
    assert reply["id"] == "c1" and reply["response"] == {"output": deep}


@pytest.mark.parametrize("provider", ["openai", "google", "xai"])
def test_an_upstream_inventing_event_types_does_not_grow_the_codec(provider):
    """A codec's memory is bounded whatever the upstream sends: 5,000 distinct unknown
    event types are counted as unknown, not remembered one by one."""
    c = codec(provider)
    for i in range(5000):
        message = {"type": f"invented.{i}"} if provider != "google" else {f"invented{i}": {}}
        assert c.receive(encode(provider, message)) == []
    assert c.stats.unknown_events == 5000
    assert c.stats.counts == {}
