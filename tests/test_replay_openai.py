"""Replays of OpenAI Realtime (GA) sessions as the real service sends them, fed through the
codec with the exact frames expected (issue 19). Event shapes: the ``openai`` package's
``types/realtime`` (each server event below validates against ``RealtimeServerEvent``);
error codes: platform.openai.com/docs/guides/error-codes; the bad-key sequence (upgrade,
``error`` invalid_api_key, close 3000): twilio-samples/speech-assistant-openai-realtime-api-
python#4."""

from __future__ import annotations

import base64
import json

import pydantic
import pytest
from openai.types.realtime import RealtimeServerEvent

from speko_bridge.frames import Error, ToolCall, Transcript, Usage
from speko_bridge.params import SessionParams, ToolSpec
from speko_bridge.providers.base import AudioDone, AudioOut, Fatal, Ready
from speko_bridge.providers.openai import OpenAICodec

PCM = b"\x01\x00" * 2400
server_event = pydantic.TypeAdapter(RealtimeServerEvent)
TOOLS = [ToolSpec(name="get_weather", parameters={"type": "object", "properties": {"city": {"type": "string"}}})]


def codec(**kw) -> OpenAICodec:
    return OpenAICodec(SessionParams(provider="openai", model="gpt-realtime", **kw))


def feed(c: OpenAICodec, *events, validate: bool = True) -> list:
    out = []
    for i, e in enumerate(events):
        e = {"event_id": f"event_{i}", **e}
        if validate:
            server_event.validate_python(e)  # the sequence is what the real service sends
        out += c.receive(json.dumps(e))
    return out


def session() -> dict:
    return {"type": "realtime", "object": "realtime.session", "id": "sess_1", "model": "gpt-realtime",
            "output_modalities": ["audio"], "tools": [], "tool_choice": "auto",
            "audio": {"output": {"voice": "marin"}}}


def usage(in_audio: int, out_audio: int) -> dict:
    return {"total_tokens": in_audio + out_audio, "input_tokens": in_audio, "output_tokens": out_audio,
            "input_token_details": {"audio_tokens": in_audio, "text_tokens": 0, "cached_tokens": 0},
            "output_token_details": {"audio_tokens": out_audio, "text_tokens": 0}}


def response(rid: str, status: str, output: list, **extra) -> dict:
    return {"id": rid, "object": "realtime.response", "status": status, "output": output,
            "conversation_id": "conv_1", "output_modalities": ["audio"], **extra}


def call_item(status: str, arguments: str) -> dict:
    return {"id": "item_2", "object": "realtime.item", "type": "function_call", "status": status,
            "name": "get_weather", "call_id": "call_1", "arguments": arguments}


def test_turn_with_a_tool_call():
    c = codec(tools=TOOLS)
    assert feed(c, {"type": "session.created", "session": session()},
                {"type": "session.updated", "session": session()}) == [Ready()]
    c.audio(PCM)
    assert [json.loads(m)["type"] for m in c.commit()] == ["input_audio_buffer.commit", "response.create"]
    out = feed(c,
               {"type": "input_audio_buffer.committed", "item_id": "item_1", "previous_item_id": None},
               {"type": "conversation.item.input_audio_transcription.delta", "item_id": "item_1",
                "content_index": 0, "delta": "Weather in Paris?"},
               {"type": "conversation.item.input_audio_transcription.completed", "item_id": "item_1",
                "content_index": 0, "transcript": "Weather in Paris?", "usage": {"type": "duration", "seconds": 1.2}},
               {"type": "response.created", "response": response("resp_1", "in_progress", [])},
               {"type": "response.output_item.added", "response_id": "resp_1", "output_index": 0,
                "item": call_item("in_progress", "")},
               {"type": "response.function_call_arguments.delta", "response_id": "resp_1", "item_id": "item_2",
                "output_index": 0, "call_id": "call_1", "delta": '{"city":'},
               {"type": "response.function_call_arguments.done", "response_id": "resp_1", "item_id": "item_2",
                "output_index": 0, "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
               {"type": "response.done", "response": response(
                   "resp_1", "completed", [call_item("completed", '{"city":"Paris"}')], usage=usage(12, 0))})
    assert out == [Transcript("user", "Weather in Paris?", False), Transcript("user", "Weather in Paris?", True),
                   ToolCall("call_1", "get_weather", '{"city":"Paris"}'), Usage(12, 0)]
    assert [json.loads(m)["type"] for m in c.tool_result("call_1", '{"temp_c": 21}')] == [
        "conversation.item.create", "response.create"]


def test_barge_in_cancels_and_truncates_at_what_was_heard():
    c = codec()
    feed(c, {"type": "session.updated", "session": session()})
    c.commit()
    where = {"response_id": "resp_1", "item_id": "item_3", "output_index": 0, "content_index": 0}
    out = feed(c, {"type": "response.created", "response": response("resp_1", "in_progress", [])},
               *[{"type": "response.output_audio.delta", **where, "delta": base64.b64encode(PCM).decode()}] * 3)
    assert out == [AudioOut(PCM, 24000, "item_3")] * 3
    assert [json.loads(m) for m in c.interrupt(played_ms=150)] == [
        {"type": "response.cancel", "response_id": "resp_1"},
        {"type": "conversation.item.truncate", "item_id": "item_3", "content_index": 0, "audio_end_ms": 150}]
    out = feed(c, {"type": "response.output_audio.done", **where},
               {"type": "response.done", "response": response(
                   "resp_1", "cancelled", [], status_details={"type": "cancelled", "reason": "client_cancelled"},
                   usage=usage(5, 15))},
               {"type": "error", "error": {"type": "invalid_request_error", "code": "response_cancel_not_active",
                                           "message": "Cancellation failed: no active response found"}})
    assert out == [AudioDone(), Usage(5, 15)]  # the race after a cancel is not the client's business


def test_a_response_without_usage_still_ends_with_one_usage_frame():
    c = codec()
    feed(c, {"type": "session.updated", "session": session()})
    c.commit()
    assert feed(c, {"type": "response.done", "response": response("resp_1", "completed", [])}) == [Usage(0, 0)]


def test_bad_key_is_an_error_event_before_anything_else():
    c = codec()
    out = feed(c, {"type": "error", "error": {"type": "invalid_request_error", "code": "invalid_api_key",
                                              "message": "Incorrect API key provided.", "param": None}})
    assert out == [Fatal(4502, "provider_auth_failed", "Incorrect API key provided.")]


def test_an_invalid_voice_refuses_the_session_at_once():
    c = codec(voice="Marvin")
    out = feed(c, {"type": "session.created", "session": session()},
               {"type": "error", "error": {"type": "invalid_request_error", "code": "invalid_value",
                                           "param": "session.audio.output.voice",
                                           "message": "Invalid value: 'Marvin'."}})
    assert out == [Fatal(4502, "provider_error",
                         "the provider refused the session config (at session.audio.output.voice): "
                         "Invalid value: 'Marvin'.")]


@pytest.mark.parametrize("code", ["account_deactivated", "billing_hard_limit_reached", "insufficient_quota"])
def test_account_refusals_end_the_session_with_the_reason(code):
    c = codec()
    feed(c, {"type": "session.updated", "session": session()})
    out = feed(c, {"type": "error", "error": {"type": "invalid_request_error", "code": code, "message": "why"}})
    assert out == [Fatal(4502, "provider_error", "why")]
    # while a conversation error stays an error frame
    assert feed(c, {"type": "error", "error": {"type": "invalid_request_error", "code": "invalid_value",
                                               "message": "bad item"}}) == [Error("provider_error", "bad item")]
