"""Client protocol codec edges (sans-IO, no sockets): what a client reads in the messages
the basic tests only check the type of. What a user would notice: a refusal or a last error
that does not say why, an invalid message answered without naming what was wrong, audio of
one reply that the bridge can no longer tell apart from the next. Found by ``make mutants``
(docs/testing.md)."""

from __future__ import annotations

import base64
import json

import pytest

from speko_bridge.clientproto.base import (
    AudioChunk,
    FlushAudio,
    Forward,
    Invalid,
    Reply,
    Respond,
    TextMessage,
    ToolOutput,
)
from speko_bridge.clientproto.native import NativeCodec
from speko_bridge.clientproto.openai_compat import OpenAICompatCodec
from speko_bridge.frames import Error as ErrorFrame
from speko_bridge.frames import ToolCall, Transcript, Usage
from speko_bridge.params import SessionParams, ToolSpec

TOOLS = [ToolSpec(name="get_weather", parameters={"type": "object", "properties": {}})]


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


# --------------------------------------------------------------------------- OpenAI-compatible


def compat(provider: str = "google", **kw) -> OpenAICompatCodec:
    return OpenAICompatCodec(SessionParams(provider=provider, model="m", tools=TOOLS, **kw),
                             "sess_0123456789", provider, 1_900_000_000)


def answers(intents) -> list[dict]:
    """The JSON events a client receives for these intents (Reply and Invalid carry them)."""
    return [json.loads(i.message if isinstance(i, Reply) else i.answer) for i in intents]


def test_compat_a_binary_message_is_answered_with_how_to_send_audio():
    (err,) = answers(compat().receive_bytes(b"\x00\x01"))
    assert err["error"]["code"] == "invalid_json"
    assert err["error"]["message"] == "Binary frames are not supported: send audio as input_audio_buffer.append."


def test_compat_an_unknown_event_type_is_quoted_short_and_the_supported_ones_listed():
    (err,) = answers(compat().receive_text(json.dumps({"type": "y" * 100})))
    assert err["error"]["param"] == "type"
    assert err["error"]["message"] == (
        "Invalid value: '" + "y" * 64 + "'. Supported values are: conversation.item.create, "
        "conversation.item.delete, conversation.item.retrieve, conversation.item.truncate, "
        "input_audio_buffer.append, input_audio_buffer.clear, input_audio_buffer.commit, "
        "output_audio_buffer.clear, response.cancel, response.create, session.update.")


@pytest.mark.parametrize("kind, what", [
    ("input_audio_buffer.clear", "input_audio_buffer.clear (audio is streamed to the provider as it arrives)"),
    ("conversation.item.delete", "conversation.item.delete"),
    ("output_audio_buffer.clear", "output_audio_buffer.clear (WebRTC only)"),
])
def test_compat_what_the_provider_cannot_do_is_answered_not_ignored(kind, what):
    (err,) = answers(compat("xai").receive_text(json.dumps({"type": kind, "event_id": "e9"})))
    assert err["error"]["code"] == "unsupported_for_provider" and err["error"]["event_id"] == "e9"
    assert err["error"]["message"] == f"{what} is not supported through the bridge for provider 'xai'."


def test_compat_response_parameters_are_refused_but_the_response_still_comes():
    out = compat().receive_text('{"type":"response.create","response":{"voice":"y","instructions":"x"}}')
    assert out[-1] == Respond()
    (err,) = answers(out[:-1])
    assert err["error"]["param"] == "response" and err["error"]["message"] == (
        "response.create parameters (instructions, voice); the response uses the session's is not "
        "supported through the bridge for provider 'google'.")
    assert compat().receive_text('{"type":"response.create","response":{}}') == [Respond()]


def test_compat_a_truncate_is_acknowledged_as_asked_and_a_bad_one_is_invalid():
    c = compat()
    (ack,) = answers(c.receive_text('{"type":"conversation.item.truncate","item_id":"i1","content_index":0,'
                                    '"audio_end_ms":1500}'))
    assert {k: ack[k] for k in ("type", "item_id", "content_index", "audio_end_ms")} == {
        "type": "conversation.item.truncated", "item_id": "i1", "content_index": 0, "audio_end_ms": 1500}
    for bad in ('"item_id":5,"audio_end_ms":1', '"item_id":"i","content_index":"0","audio_end_ms":1',
                '"item_id":"i","audio_end_ms":-1', '"item_id":"i","audio_end_ms":1.5'):
        (intent,) = c.receive_text('{"type":"conversation.item.truncate",' + bad + "}")
        assert isinstance(intent, Invalid) and json.loads(intent.answer)["error"]["param"] == "item_id"


def test_compat_an_item_that_is_not_user_text_or_tool_output_is_refused_naming_the_item_type():
    (err,) = answers(compat().receive_text('{"type":"conversation.item.create","item":{"type":"message"}}'))
    assert err["error"]["code"] == "unsupported_for_provider" and err["error"]["param"] == "item.type"


def test_compat_a_tool_output_keeps_the_client_item_id_and_chains_the_items():
    c = compat()
    added, done, output = c.receive_text(json.dumps({"type": "conversation.item.create", "item": {
        "id": "item_mine", "type": "function_call_output", "call_id": "c1", "output": "{}"}}))
    assert output == ToolOutput("c1", "{}")
    added, done = answers([added, done])
    assert added["item"]["id"] == done["item"]["id"] == "item_mine" and added["previous_item_id"] is None
    second = answers(c.receive_text(json.dumps({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": "c2", "output": "{}"}}))[:1])[0]
    assert second["previous_item_id"] == "item_mine" and second["item"]["id"] != "item_mine"


def test_compat_the_last_error_says_whose_fault_it_was():
    """OpenAI's error ``type``: the client's (invalid_request_error) for token, TTL or
    revocation ends; the server's for a provider failure or a bridge fault."""
    def kind(code, error_code):
        (err,) = [json.loads(m) for m in compat().final(code, error_code, "why")]
        assert err["error"]["code"] == error_code and err["error"]["message"] == "why"
        return err["error"]["type"]
    assert kind(4001, "invalid_token") == "invalid_request_error"
    assert kind(4008, "session_expired") == "invalid_request_error"
    assert kind(4500, "provider_unavailable") == "server_error"
    assert kind(4502, "provider_error") == "server_error"
    assert kind(1011, "internal_error") == "server_error"


def test_compat_refusals_have_distinct_event_ids_and_say_why():
    first = json.loads(OpenAICompatCodec.refusal(4001, "invalid_token", "token expired")[0])
    second = json.loads(OpenAICompatCodec.refusal(4001, "invalid_token", "token expired")[0])
    assert first["event_id"] != second["event_id"]
    assert first["error"] == {"type": "invalid_request_error", "code": "invalid_token", "message": "token expired",
                              "param": None, "event_id": None}


def test_compat_with_openai_behind_it_the_client_declares_tools_and_bytes_are_read_as_text():
    c = compat("openai")
    assert c.declared_tools() is None and compat("google").declared_tools() == frozenset({"get_weather"})
    assert c.raw_forwarder()(b'{"type":"x","t":"\xc3\xa9"}') == TextMessage('{"type":"x","t":"\u00e9"}')
    assert compat("google").raw_forwarder() is None
    (commit,) = c.receive_text('{"type":"input_audio_buffer.commit"}')
    assert commit.reply_due  # OpenAI answers a commit: the session waits for that answer
    (unreadable,) = c.receive_text("nope")
    assert unreadable == Forward("nope", False)


def test_compat_with_openai_behind_it_only_turn_detection_is_taken_from_the_minted_config():
    c = compat("openai")
    other = '{"type":"conversation.item.create"}'
    start = c.upstream_start([('{"type":"session.update","session":{"instructions":"hi",'
                              '"audio":{"input":{"turn_detection":null,"format":{"type":"audio/pcm"}}}}}'), other])
    assert json.loads(start[0])["session"] == {"instructions": "hi", "audio": {"input": {"format": {"type": "audio/pcm"}}}}
    assert json.loads(start[1]) == {"type": "conversation.item.create"}
    assert json.loads(c.upstream_start(['{"type":"session.update","session":{}}'])[0])["session"] == {}
    assert compat("google").upstream_start(["a", "b"]) == ["a", "b"]


def test_compat_the_user_item_usage_is_the_duration_of_the_committed_audio():
    c = compat()
    c.receive_text(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\0" * 48_000).decode()}))
    c.receive_text(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\0" * 24_000).decode()}))
    c.receive_text('{"type":"input_audio_buffer.commit"}')
    (done,) = [json.loads(m.text) for m in c.frame(Transcript("user", "hello", True))]
    assert done["transcript"] == "hello" and done["usage"] == {"type": "duration", "seconds": 1.5}
    # the next commit counts only its own audio
    c.receive_text(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\0" * 4_800).decode()}))
    c.receive_text('{"type":"input_audio_buffer.commit"}')
    (done,) = [json.loads(m.text) for m in c.frame(Transcript("user", "hi", True))]
    assert done["usage"]["seconds"] == 0.1


# --------------------------------------------------------------------------- OpenAI events written


def written(c: OpenAICompatCodec, items) -> list[dict]:
    """Every event of ``items`` as the client receives it (audio chunks through
    audio_message), each event id checked (``event_`` + unique) and then left out."""
    events = [json.loads(c.audio_message(i) if isinstance(i, AudioChunk) else i.text) for i in items]
    ids = [e.pop("event_id") for e in events]
    assert all(i.startswith("event_") for i in ids) and len(set(ids)) == len(ids)
    return events


def test_compat_one_whole_response_is_written_exactly_as_openai_writes_it():
    """Audio with its transcript, then a tool call, then usage: every field of every event,
    because OpenAI clients read them (ids to match items, indexes, statuses, the transcript in
    the item's content, the usage totals)."""
    c = compat()
    c.receive_text(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\0\0").decode()}))
    user = json.loads(c.receive_text('{"type":"input_audio_buffer.commit"}')[1].message)["item_id"]
    items = (c.audio("a1", b"\x01\x00") + c.frame(Transcript("assistant", "Hi ", False))
             + c.frame(Transcript("assistant", "Hi there", True))
             + c.frame(ToolCall("call_1", "get_weather", '{"c":1}')) + c.frame(Usage(3, 7)))
    events = written(c, items)
    rid = events[0]["response"]["id"]
    aid = events[1]["item"]["id"]
    fid = events[11]["item"]["id"]
    assert rid.startswith("resp_") and aid.startswith("item_") and fid.startswith("item_")
    assert len({rid, aid, fid, user}) == 4
    where = {"response_id": rid, "item_id": aid, "output_index": 0, "content_index": 0}
    audio_item = {"id": aid, "object": "realtime.item", "type": "message", "role": "assistant",
                  "status": "in_progress", "content": []}
    done_item = {**audio_item, "status": "completed",
                 "content": [{"type": "output_audio", "transcript": "Hi there"}]}
    call = {"id": fid, "object": "realtime.item", "type": "function_call", "status": "in_progress",
            "call_id": "call_1", "name": "get_weather", "arguments": ""}
    call_done = {**call, "status": "completed", "arguments": '{"c":1}'}
    assert events == [
        {"type": "response.created", "response": {"id": rid, "object": "realtime.response",
                                                  "status": "in_progress", "output": [], "output_modalities": ["audio"]}},
        {"type": "response.output_item.added", "response_id": rid, "output_index": 0, "item": audio_item},
        {"type": "conversation.item.added", "previous_item_id": user, "item": audio_item},
        {"type": "response.content_part.added", **where, "part": {"type": "audio", "transcript": ""}},
        {"type": "response.output_audio.delta", **where, "delta": base64.b64encode(b"\x01\x00").decode()},
        {"type": "response.output_audio_transcript.delta", **where, "delta": "Hi "},
        {"type": "response.output_audio.done", **where},
        {"type": "response.output_audio_transcript.done", **where, "transcript": "Hi there"},
        {"type": "response.content_part.done", **where, "part": {"type": "audio", "transcript": "Hi there"}},
        {"type": "response.output_item.done", "response_id": rid, "output_index": 0, "item": done_item},
        {"type": "conversation.item.done", "previous_item_id": None, "item": done_item},
        {"type": "response.output_item.added", "response_id": rid, "output_index": 1, "item": call},
        {"type": "response.function_call_arguments.done", "response_id": rid, "item_id": fid, "output_index": 1,
         "call_id": "call_1", "name": "get_weather", "arguments": '{"c":1}'},
        {"type": "response.output_item.done", "response_id": rid, "output_index": 1, "item": call_done},
        {"type": "response.done", "response": {
            "id": rid, "object": "realtime.response", "status": "completed", "status_details": None,
            "output": [done_item, call_done], "output_modalities": ["audio"],
            "usage": {"total_tokens": 10, "input_tokens": 3, "output_tokens": 7,
                      "input_token_details": {"audio_tokens": 3, "text_tokens": 0, "cached_tokens": 0},
                      "output_token_details": {"audio_tokens": 7, "text_tokens": 0}}}},
    ]
    # the next reply's audio item follows this one in the conversation
    nxt = written(c, c.audio("a2", b"\x01\x00"))
    assert nxt[2]["type"] == "conversation.item.added" and nxt[2]["previous_item_id"] == aid


def test_compat_a_transcript_without_a_final_is_joined_from_its_deltas():
    c = compat()
    events = written(c, c.frame(Transcript("assistant", "Hel", False)) + c.frame(Transcript("assistant", "lo", False))
                     + c.frame(Usage(0, 0)))
    done = next(e for e in events if e["type"] == "response.output_audio_transcript.done")
    assert done["transcript"] == "Hello"
    assert events[-1]["response"]["output"][0]["content"] == [{"type": "output_audio", "transcript": "Hello"}]


def test_compat_a_cancelled_response_says_the_client_cancelled_it():
    c = compat()
    items = c.audio("a1", b"\x00\x00")
    c.receive_text('{"type":"response.cancel"}')
    done = written(c, items + c.frame(Usage(0, 0)))[-1]["response"]
    assert (done["status"], done["status_details"]) == ("cancelled", {"type": "cancelled", "reason": "client_cancelled"})
    assert done["output"][0]["status"] == "incomplete"


def test_compat_user_transcripts_before_any_commit_still_name_an_item():
    c = compat()
    delta, final = written(c, c.frame(Transcript("user", "he", False)) + c.frame(Transcript("user", "hello", True)))
    assert delta["type"] == "conversation.item.input_audio_transcription.delta"
    assert delta["item_id"].startswith("item_") and delta["content_index"] == 0 and delta["delta"] == "he"
    assert final["item_id"].startswith("item_") and final["usage"] == {"type": "duration", "seconds": 0.0}
    assert final["item_id"] == delta["item_id"]  # one item: a client de-duplicates by its id


def test_compat_a_provider_error_mid_response_is_a_server_error_event():
    c = compat()
    (err,) = written(c, c.frame(ErrorFrame("provider_error", "the model did not answer")))
    assert err == {"type": "error", "error": {"type": "server_error", "code": "provider_error",
                                              "message": "the model did not answer", "param": None, "event_id": None}}


def test_compat_session_created_is_the_minted_session_in_openai_shape():
    c = compat(voice="marin", system_prompt="Be brief")
    (created,) = written(c, c.opening())
    assert created == {"type": "session.created", "session": {
        "type": "realtime", "object": "realtime.session", "id": "sess_0123456789", "model": "m",
        "output_modalities": ["audio"], "instructions": "Be brief",
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}],
        "tool_choice": "auto",
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None,
                            "transcription": {"model": "provider-default"}},
                  "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}},
        "expires_at": 1_900_000_000}}


def commit(c: OpenAICompatCodec, pcm: bytes) -> list[dict]:
    c.receive_text(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}))
    flush, *acks = c.receive_text('{"type":"input_audio_buffer.commit"}')
    assert flush == FlushAudio()
    return answers(acks)


def test_compat_a_commit_is_acknowledged_with_the_user_item_chained_to_the_last():
    c = compat()
    first = commit(c, b"\0\0")
    user = first[0]["item_id"]
    assert user.startswith("item_")
    item = {"id": user, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}]}
    assert [{k: v for k, v in e.items() if k != "event_id"} for e in first] == [
        {"type": "input_audio_buffer.committed", "previous_item_id": None, "item_id": user},
        {"type": "conversation.item.added", "previous_item_id": None, "item": item},
        {"type": "conversation.item.done", "previous_item_id": None, "item": item}]
    second = commit(c, b"\0\0")
    assert [e["previous_item_id"] for e in second] == [user] * 3 and second[0]["item_id"] != user
    # the transcription of that item names it, with the duration of its audio (100 bytes)
    commit(c, b"\0" * 100)
    (final,) = written(c, c.frame(Transcript("user", "hi", True)))
    assert (final["content_index"], final["usage"]) == (0, {"type": "duration", "seconds": 0.002})


def test_compat_a_tool_output_is_acknowledged_as_a_completed_item():
    c = compat()
    added, done, _ = c.receive_text(json.dumps({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": "c1", "output": "sunny"}}))
    added, done = answers([added, done])
    item = added["item"]
    assert item["id"].startswith("item_")
    assert item == {"id": item["id"], "object": "realtime.item", "type": "function_call_output", "call_id": "c1",
                    "output": "sunny", "status": "completed"}
    assert (added["type"], done["type"], done["item"], done["previous_item_id"]) == (
        "conversation.item.added", "conversation.item.done", item, None)


@pytest.mark.parametrize("text, code, message, param", [
    ('{"type":"input_audio_buffer.append","audio":"***","event_id":"e1"}', "invalid_value",
     "`audio` must be base64-encoded PCM16.", "audio"),
    ('{"type":"input_audio_buffer.commit","event_id":"e1"}', "input_audio_buffer_commit_empty",
     "Error committing input audio buffer: buffer too small.", None),
    (('{"type":"conversation.item.create","event_id":"e1","item":{"type":"function_call_output","call_id":"c",'
     '"output":5}}'), "invalid_value", "function_call_output needs string `call_id` and `output`.", "item"),
    ('{"type":"conversation.item.truncate","event_id":"e1","item_id":"i"}', "invalid_value",
     ("conversation.item.truncate needs a string `item_id`, an integer `content_index` and a non-negative "
     "integer `audio_end_ms`."), "item_id"),
    ('{"type":"session.update","event_id":"e1","session":[]}', "invalid_value", "`session` must be an object.",
     "session"),
    ('{"type":"conversation.item.create","event_id":"e1","item":{"type":"message"}}', "unsupported_for_provider",
     ("conversation.item.create with an item other than a user message or a function_call_output is not "
     "supported through the bridge for provider 'google'."), "item.type"),
    ('{"type":"response.create","event_id":"e1","response":{"voice":"x"}}', "unsupported_for_provider",
     ("response.create parameters (voice); the response uses the session's is not supported through the "
     "bridge for provider 'google'."), "response"),
    ('[1]', "invalid_value", "An event must be a JSON object with a string `type`.", "type"),
    ('{"type":5}', "invalid_value", "An event must be a JSON object with a string `type`.", "type"),
    ("[" * 100_000 + "]" * 100_000, "invalid_json", "The message is nested too deeply to read.", None),
])
def test_compat_each_bad_event_gets_its_own_code_message_and_param(text, code, message, param):
    err = answers([i for i in compat().receive_text(text) if isinstance(i, (Reply, Invalid))])[0]["error"]
    assert (err["code"], err["message"], err["param"]) == (code, message, param)
    assert err["event_id"] == ("e1" if '"event_id":"e1"' in text else None)


def test_compat_text_that_is_not_json_says_so():
    (err,) = answers(compat().receive_text("{nope"))
    assert err["error"]["code"] == "invalid_json"
    assert err["error"]["message"].startswith("The message is not valid JSON: ")


def test_compat_a_truncate_without_content_index_means_the_first_part_and_zero_ms_is_valid():
    (ack,) = answers(compat().receive_text('{"type":"conversation.item.truncate","item_id":"i1","audio_end_ms":0}'))
    assert (ack["type"], ack["content_index"], ack["audio_end_ms"]) == ("conversation.item.truncated", 0, 0)


def test_compat_a_one_character_bearer_token_and_a_protocol_without_token():
    assert OpenAICompatCodec.handshake([], {"authorization": "Bearer t"}).token == "t"
    h = OpenAICompatCodec.handshake(["realtime"], {})
    assert (h.token, h.subprotocol) == (None, "realtime")  # selected, so the refusal can be read


def test_compat_with_openai_behind_it_bytes_that_are_not_utf8_are_replaced_not_fatal():
    assert compat("openai").raw_forwarder()(b'{"t":"\xff"}') == TextMessage('{"t":"\ufffd"}')


def test_compat_reply_audio_keeps_the_provider_item_id():
    c = compat()
    chunk = next(i for i in c.audio("a1", b"\0\0") if isinstance(i, AudioChunk))
    assert chunk.item_id == "a1"


def test_compat_a_second_commit_without_new_audio_is_refused_like_openai_does():
    c = compat()
    commit(c, b"\0\0")
    (err,) = answers(c.receive_text('{"type":"input_audio_buffer.commit"}'))
    assert err["error"]["code"] == "input_audio_buffer_commit_empty"
