"""Client protocol codec edges (sans-IO, no sockets): what a client reads in the messages
the basic tests only check the type of. What a user would notice: a refusal or a last error
that does not say why, an invalid message answered without naming what was wrong, audio of
one reply that the bridge can no longer tell apart from the next. Found by ``make mutants``
(docs/testing.md)."""

from __future__ import annotations

import json

from speko_bridge.clientproto.base import AudioChunk
from speko_bridge.clientproto.native import NativeCodec
from speko_bridge.params import SessionParams


def native() -> NativeCodec:
    return NativeCodec(SessionParams(provider="openai", model="gpt-realtime"), "sess_0123456789", "openai")


# --------------------------------------------------------------------------- native protocol


def test_native_refusal_says_why_in_the_error_and_in_the_close():
    assert [json.loads(m) for m in NativeCodec.refusal(4001, "invalid_token", "token signature is invalid")] == [
        {"type": "error", "code": "invalid_token", "message": "token signature is invalid"},
        {"type": "close", "code": 4001, "reason": "token signature is invalid"}]


def test_native_last_error_names_its_code_and_cause():
    assert [json.loads(m) for m in native().final(4502, "provider_auth_failed", "Incorrect API key")] == [
        {"type": "error", "code": "provider_auth_failed", "message": "Incorrect API key"},
        {"type": "close", "code": 4502, "reason": "Incorrect API key"}]


def test_native_invalid_message_answer_names_what_is_wrong():
    (intent,) = native().receive_text('{"type":"tool_result","output":"{}"}')
    assert json.loads(intent.answer) == {
        "type": "error", "code": "invalid_message", "message": "Object missing required field `callId`"}


def test_native_audio_keeps_the_item_it_belongs_to():
    """The outbox joins and drops audio per item (an interrupt drops the rest of that item):
    the chunk must carry the provider's item id."""
    assert native().audio("item_7", b"\x01\x00") == [AudioChunk("item_7", b"\x01\x00")]
