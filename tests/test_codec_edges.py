"""Provider codec edges (sans-IO, no sockets): what goes upstream and what the client gets
for events and intents the basic codec tests do not send. Each case is something a user
would notice: a tool the model cannot call, a second reply requested twice, a transcript
or an error that never reaches the client, a truncation OpenAI refuses. Found by
``make mutants`` (docs/testing.md)."""

from __future__ import annotations

import base64
import json

from speko_bridge.frames import Error as ErrorFrame
from speko_bridge.frames import ToolCall, Transcript, Usage
from speko_bridge.params import SessionParams, ToolSpec
from speko_bridge.providers.base import AudioOut, Fatal, Malformed, Ready, Reconnect
from speko_bridge.providers.google import GoogleCodec, google_headers
from speko_bridge.providers.openai import OpenAICodec
from speko_bridge.providers.xai import MAX_TRACKED_ITEMS, XAICodec
from speko_bridge.simulator.google import live_message_checker
from speko_bridge.simulator.openai import client_event_checker

check_openai = client_event_checker()
check_gemini = live_message_checker()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def openai(**kw) -> OpenAICodec:
    return OpenAICodec(SessionParams(provider="openai", model="gpt-realtime", **kw))


def feed(c, *events) -> list:
    out = []
    for e in events:
        out += c.receive(json.dumps(e))
    return out


def sent(messages) -> list[dict]:
    """Upstream messages as JSON, each checked against OpenAI's client event schema."""
    events = [json.loads(m) for m in messages]
    for e in events:
        assert check_openai(e) is None, check_openai(e)
    return events


# --------------------------------------------------------------------------- OpenAI


def test_openai_tools_keep_their_schema_and_a_bare_tool_gets_an_empty_object():
    params = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    c = openai(tools=[ToolSpec(name="get_weather", description="Weather now", parameters=params),
                      ToolSpec(name="ping")])
    tools = sent(c.start())[0]["session"]["tools"]
    assert tools == [
        {"type": "function", "name": "get_weather", "description": "Weather now", "parameters": params},
        {"type": "function", "name": "ping", "parameters": {"type": "object", "properties": {}}},
    ]


def test_openai_a_second_commit_before_the_reply_starts_asks_for_one_reply():
    """Two quick commits: the second response.create would be refused upstream
    ('conversation already has an active response') and its reply lost."""
    c = openai()
    c.audio(b"\0\0" * 100)
    assert [e["type"] for e in sent(c.commit())] == ["input_audio_buffer.commit", "response.create"]
    c.audio(b"\0\0" * 100)
    assert [e["type"] for e in sent(c.commit())] == ["input_audio_buffer.commit"]
    feed(c, {"type": "response.created", "response": {"id": "r1"}},
         {"type": "response.done", "response": {"id": "r1", "status": "completed"}})
    assert [e["type"] for e in sent(c.drain_outbound())] == ["response.create"]


def test_openai_text_replies_and_user_transcription_reach_the_client():
    c = openai()
    assert feed(c, {"type": "response.output_text.done", "text": "Hello there."}) == [
        Transcript("assistant", "Hello there.", True)]
    assert feed(c, {"type": "conversation.item.input_audio_transcription.delta", "delta": "What's"}) == [
        Transcript("user", "What's", False)]


def test_openai_failed_user_transcription_is_an_error_the_client_can_read():
    c = openai()
    assert feed(c, {"type": "conversation.item.input_audio_transcription.failed",
                    "error": {"message": "audio too short"}}) == [
        ErrorFrame("provider_error", "user transcription failed: audio too short")]
    assert feed(c, {"type": "conversation.item.input_audio_transcription.failed"}) == [
        ErrorFrame("provider_error", "user transcription failed: transcription failed")]


def ready_openai() -> OpenAICodec:
    """A codec whose session config the provider accepted (``session.updated`` seen)."""
    c = openai()
    assert feed(c, {"type": "session.updated"}) == [Ready()]
    return c


def test_openai_an_error_without_details_still_says_provider_error():
    assert feed(ready_openai(), {"type": "error", "error": {}}) == [ErrorFrame("provider_error", "provider error")]
    assert feed(ready_openai(), {"type": "error"}) == [ErrorFrame("provider_error", "provider error")]
    # before session.updated the error is a refusal of the config: an immediate 4502 that
    # still says what little the provider said (docs/providers.md, "A refusal is immediate")
    assert feed(openai(), {"type": "error"}) == [
        Fatal(4502, "provider_error", "the provider refused the session config: provider error")]


def test_openai_every_malformed_event_is_counted_once():
    """The bridge ends a session after a run of malformed provider events by watching this
    counter change: each one must move it by exactly one."""
    c = openai()
    feed(c, {"type": "response.output_audio_transcript.done"},
         {"type": "conversation.item.input_audio_transcription.delta"},
         {"type": "conversation.item.input_audio_transcription.completed"},
         {"type": "response.output_audio.delta"})
    assert c.stats.malformed_events == 4


def test_openai_interrupt_without_a_response_id_still_cancels():
    c = openai()
    c.commit()
    assert feed(c, {"type": "response.created"}) == []
    assert sent(c.interrupt(100)) == [{"type": "response.cancel"}]


def test_openai_truncation_is_whole_milliseconds_and_can_be_zero():
    c = openai()
    c.commit()
    feed(c, {"type": "response.created", "response": {"id": "r1"}},
         {"type": "response.output_audio.delta", "item_id": "item_A", "delta": b64(b"\0" * 4810)})
    truncate = sent(c.interrupt(10_000))[1]
    assert truncate["audio_end_ms"] == 100 and type(truncate["audio_end_ms"]) is int  # 100.2 ms received
    c.commit()
    feed(c, {"type": "response.created", "response": {"id": "r2"}},
         {"type": "response.output_audio.delta", "item_id": "item_B", "delta": b64(b"\0" * 4800)})
    assert sent(c.interrupt(0))[1] == {"type": "conversation.item.truncate", "item_id": "item_B",
                                       "content_index": 0, "audio_end_ms": 0}


def test_openai_audio_without_an_item_id_is_played_but_never_truncated():
    """Nothing can be truncated without an item id (OpenAI would answer with an error),
    and such audio after an interrupt must still play."""
    c = openai()
    c.commit()
    feed(c, {"type": "response.created", "response": {"id": "r1"}},
         {"type": "response.output_audio.delta", "item_id": "item_A", "delta": b64(b"\0" * 480)})
    c.interrupt(5)
    out = feed(c, {"type": "response.output_audio.delta", "delta": b64(b"\1\0" * 240)})
    assert out == [AudioOut(b"\1\0" * 240, 24000, None)]
    assert [e["type"] for e in sent(c.interrupt(5))] == ["response.cancel"]  # no truncate


# --------------------------------------------------------------------------- Gemini


def gemini(**kw) -> GoogleCodec:
    return GoogleCodec(SessionParams(provider="google", model="gemini-live", **kw))


def gemini_sent(messages) -> list[dict]:
    decoded = [json.loads(m) for m in messages]
    for m in decoded:
        assert check_gemini(m) is None, (check_gemini(m), m)
    return decoded


def gfeed(c: GoogleCodec, *messages) -> list:
    out = []
    for m in messages:
        out += c.receive(json.dumps(m).encode())
    return out


def gaudio(pcm: bytes) -> dict:
    return {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": b64(pcm)}}


def test_gemini_authenticates_with_the_api_key_header():
    assert google_headers("AIza-test") == {"x-goog-api-key": "AIza-test"}


def test_gemini_tool_schemas_keep_what_gemini_understands():
    params = {
        "type": "object",
        "required": ["city"],
        "properties": {
            "city": {"type": "string", "description": "City name", "format": "city", "pattern": "^[A-Z]"},
            "unit": {"type": "string", "enum": ["C", "F"]},
            "days": {"type": ["integer", "null"], "exclusiveMinimum": 0},  # no Schema field: dropped
            "nothing": {"type": ["null"]},
            "hours": {"type": "array", "items": {"type": "integer", "nullable": True}},
        },
    }
    c = gemini(tools=[ToolSpec(name="get_weather", description="Weather", parameters=params),
                      ToolSpec(name="ping"), ToolSpec(name="noop", parameters={"type": "object"})])
    (setup,) = gemini_sent(c.start())
    decls = setup["setup"]["tools"][0]["functionDeclarations"]
    # no properties: no parameters; every tool BLOCKING (the model waits for tool_result)
    assert decls[1:] == [{"name": "ping", "behavior": "BLOCKING"}, {"name": "noop", "behavior": "BLOCKING"}]
    assert decls[0] == {"name": "get_weather", "behavior": "BLOCKING", "description": "Weather", "parameters": {
        "type": "OBJECT",
        "required": ["city"],
        "properties": {
            "city": {"type": "STRING", "description": "City name", "format": "city", "pattern": "^[A-Z]"},
            "unit": {"type": "STRING", "enum": ["C", "F"]},
            "days": {"type": "INTEGER", "nullable": True},
            "nothing": {"nullable": True},
            "hours": {"type": "ARRAY", "items": {"type": "INTEGER", "nullable": True}},
        },
    }}


def test_gemini_audio_after_a_text_part_still_plays():
    c = gemini()
    c.commit()
    out = gfeed(c, {"serverContent": {"modelTurn": {"parts": [
        {"text": "thinking"}, {"inlineData": {"mimeType": "audio/pcm;rate=24000"}},
        {"inlineData": {"data": "!!not base64!!"}}, gaudio(b"\1\0" * 10)]}}})
    # the bad part is reported (one Malformed per message), the good audio still plays
    assert out == [Malformed("modelTurn audio is not base64"), AudioOut(b"\1\0" * 10, 24000)]
    gfeed(c, {"serverContent": {"modelTurn": {"parts": [{"inlineData": {"data": "abcde"}}]}}})
    assert c.stats.malformed_events == 2


def test_gemini_tool_calls_without_ids_get_distinct_ones_and_bad_entries_are_skipped():
    c = gemini()
    out = gfeed(c, {"toolCall": {"functionCalls": [
        {"name": ""},  # malformed: no name
        {"name": "a", "args": {"x": 1}},
        {"name": "b", "args": [1, 2]},  # not an object: the client gets {}
    ]}}, {"toolCall": {"functionCalls": [
        {"id": "fc_1", "name": "c", "args": {}}, {"id": "fc_1", "name": "c", "args": {}},
        {"id": "fc_2", "name": "d", "args": {}},
    ]}})
    # each toolCall message is the model's answer: it ends the turn with one usage frame
    assert out == [Malformed("functionCall without name"), ToolCall("call_1", "a", '{"x": 1}'),
                   ToolCall("call_2", "b", "{}"), Usage(0, 0),
                   ToolCall("fc_1", "c", "{}"), ToolCall("fc_2", "d", "{}"), Usage(0, 0)]
    assert c.stats.malformed_events == 1
    assert gfeed(c, {"toolCall": {"functionCalls": [{"name": "e"}]}}) == [ToolCall("call_3", "e", "{}"), Usage(0, 0)]


def test_gemini_result_of_an_unknown_call_is_still_well_formed():
    (msg,) = gemini_sent(gemini().tool_result("fc_gone", '{"ok": true}'))
    assert msg["toolResponse"]["functionResponses"] == [{"id": "fc_gone", "name": "", "response": {"ok": True}}]


def test_gemini_interrupt_works_right_after_a_commit_and_after_a_tool_result():
    """The model is answering as soon as the turn is committed, and again once it has a tool
    result: an interrupt then must open an activity (which is how Gemini is interrupted)."""
    c = gemini()
    c.commit()
    assert gemini_sent(c.interrupt(0)) == [{"realtimeInput": {"activityStart": {}}}]
    c2 = gemini()
    c2.commit()
    gfeed(c2, {"toolCall": {"functionCalls": [{"id": "fc_1", "name": "f", "args": {}}]}})
    c2.tool_result("fc_1", "{}")
    assert gemini_sent(c2.interrupt(0)) == [{"realtimeInput": {"activityStart": {}}}]
    # Interrupting while the call waits gives the call up (answered with an error, so Gemini
    # stops waiting and the gate reopens) and interrupts what the model then says.
    c3 = gemini()
    c3.commit()
    gfeed(c3, {"toolCall": {"functionCalls": [{"id": "fc_1", "name": "f", "args": {}}]}})
    assert gemini_sent(c3.interrupt(0)) == [
        {"toolResponse": {"functionResponses": [
            {"id": "fc_1", "name": "f", "response": {"error": "the user interrupted before the tool result"}}]}},
        {"realtimeInput": {"activityStart": {}}}]
    assert c3.tool_result("fc_1", "{}") == []  # too late: Gemini no longer expects it


def test_gemini_a_resumed_connection_starts_clean():
    """After goAway the session resumes on a new connection (start() again): no activity is
    open there, nothing is gated, and the old goAway is not acted on twice."""
    c = gemini()
    c.start()  # the first connection (its start may follow input the bridge held: that stands)
    gfeed(c, {"sessionResumptionUpdate": {"newHandle": "h1", "resumable": True}})
    c.audio(b"\0\0")  # an activity is open on the old connection
    c.commit()
    c.interrupt(0)  # gated, activity open
    gfeed(c, {"goAway": {"timeLeft": "5s"}})
    c.start()
    assert next(m["realtimeInput"] for m in gemini_sent(c.audio(b"\0\0"))) == {"activityStart": {}}
    c.commit()
    assert gfeed(c, {"serverContent": {"modelTurn": {"parts": [gaudio(b"\2\0")]}}}) == [AudioOut(b"\2\0", 24000)]
    gfeed(c, {"serverContent": {"turnComplete": True}})
    assert gfeed(c, {"sessionResumptionUpdate": {"newHandle": "h2", "resumable": True}}) == []


def test_gemini_waiting_for_a_tool_result_is_a_safe_point_to_resume():
    c = gemini()
    gfeed(c, {"sessionResumptionUpdate": {"newHandle": "h1", "resumable": True}})
    c.commit()
    gfeed(c, {"toolCall": {"functionCalls": [{"id": "fc_1", "name": "f", "args": {}}]}})
    assert [type(e) for e in gfeed(c, {"goAway": {"timeLeft": "5s"}})] == [Reconnect]


def test_gemini_close_details_reach_the_client():
    c = gemini()
    assert c.upstream_closed(1008, "API key expired. Please renew.") == Fatal(
        4502, "provider_auth_failed", "provider closed the connection (code 1008: API key expired. Please renew.)")
    assert c.upstream_closed(1011, "") == Fatal(4500, "provider_unavailable", "provider closed the connection (code 1011)")


def test_gemini_usage_without_a_token_count_is_zero():
    c = gemini()
    c.commit()
    # usage is carried by the usage frame that ends the turn (one per response)
    assert gfeed(c, {"usageMetadata": {
        "promptTokensDetails": [{"modality": "AUDIO"}, {"modality": "TEXT", "tokenCount": 9}],
        "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 7}]}}) == []
    assert gfeed(c, {"serverContent": {"turnComplete": True}}) == [Usage(0, 7)]


def test_gemini_tool_schemas_keep_unions_references_and_maps():
    """anyOf/oneOf, $ref/$defs (or the older definitions) and additionalProperties have
    Gemini Schema fields (docs/providers.md): a tool that uses them keeps its meaning."""
    params = {
        "type": "object",
        "properties": {
            "guest": {"$ref": "#/$defs/person"},
            "host": {"$ref": "https://example.com/person.json"},  # not local: passed as is
            "note": {"anyOf": [{"type": "string", "maxLength": 200}, {"type": "integer"}]},
            "kind": {"oneOf": [{"type": "integer"}, {"type": "string", "enum": ["a"]}]},
            "tags": {"type": "object", "additionalProperties": {"type": "string"}},
            "meta": {"type": "object", "additionalProperties": False},
            "maybe": {"type": ["null", "string"]},  # null first: the other one is the type
        },
        "$defs": {"person": {"type": "object", "properties": {"name": {"type": "string"}}}},
    }
    legacy = {"type": "object", "properties": {"p": {"$ref": "#/definitions/p"}},
              "definitions": {"p": {"type": "number"}}}
    c = gemini(tools=[ToolSpec(name="book", parameters=params), ToolSpec(name="old", parameters=legacy)])
    decls = gemini_sent(c.start())[0]["setup"]["tools"][0]["functionDeclarations"]
    assert decls[0]["parameters"] == {
        "type": "OBJECT",
        "properties": {
            "guest": {"ref": "#/defs/person"},
            "host": {"ref": "https://example.com/person.json"},
            "note": {"anyOf": [{"type": "STRING", "maxLength": 200}, {"type": "INTEGER"}]},
            "kind": {"anyOf": [{"type": "INTEGER"}, {"type": "STRING", "enum": ["a"]}]},
            "tags": {"type": "OBJECT", "additionalProperties": {"type": "STRING"}},
            "meta": {"type": "OBJECT", "additionalProperties": False},
            "maybe": {"nullable": True, "type": "STRING"},
        },
        "defs": {"person": {"type": "OBJECT", "properties": {"name": {"type": "STRING"}}}},
    }
    assert decls[1]["parameters"] == {"type": "OBJECT", "properties": {"p": {"ref": "#/definitions/p"}},
                                      "defs": {"p": {"type": "NUMBER"}}}


# --------------------------------------------------------------------------- xAI


def xai() -> XAICodec:
    return XAICodec(SessionParams(provider="xai", model="grok-voice"))


def updated(item: str, text: str) -> dict:
    return {"type": "conversation.item.input_audio_transcription.updated", "item_id": item, "transcript": text}


def completed(item: str, text: str) -> dict:
    return {"type": "conversation.item.input_audio_transcription.completed", "item_id": item, "transcript": text}


def test_xai_the_held_back_last_word_arrives_before_the_final_transcript():
    c = xai()
    assert feed(c, updated("i1", "What is the wea")) == [Transcript("user", "What is the ", False)]
    assert feed(c, completed("i1", "What is the weather?")) == [
        Transcript("user", "weather?", False), Transcript("user", "What is the weather?", True)]


def test_xai_after_a_deep_revision_only_the_final_transcript_is_sent():
    c = xai()
    assert feed(c, updated("i1", "Hello word ")) == [Transcript("user", "Hello word ", False)]
    assert feed(c, updated("i1", "Hello world, again ")) == []  # a sent word changed
    assert feed(c, updated("i1", "Hello world, again and more ")) == []
    assert feed(c, completed("i1", "Hello world, again and more.")) == [
        Transcript("user", "Hello world, again and more.", True)]


def test_xai_two_items_transcribed_at_once_keep_their_own_progress():
    c = xai()
    out = feed(c, updated("i1", "one two "), updated("i2", "three "), updated("i1", "one two four "))
    assert out == [Transcript("user", "one two ", False), Transcript("user", "three ", False),
                   Transcript("user", "four ", False)]


def test_xai_malformed_transcription_updates_are_each_counted():
    c = xai()
    feed(c, {"type": "conversation.item.input_audio_transcription.updated", "item_id": "i1"},
         {"type": "conversation.item.input_audio_transcription.updated", "item_id": "i2"})
    assert c.stats.malformed_events == 2


def test_xai_errors_other_than_the_cancel_race_reach_the_client():
    c = xai()
    assert feed(c, {"type": "error", "error": {"code": "invalid_api_key", "message": "bad key"}}) == [
        Fatal(4502, "provider_auth_failed", "bad key")]
    assert feed(c, {"type": "error", "error": {"message": "Cancellation failed: no active response found"}}) == []


def test_xai_usage_without_token_counts_is_zero():
    assert feed(xai(), {"type": "response.done", "response": {"status": "completed", "usage": {"total_tokens": 3}}}) == [
        Usage(0, 0)]


def abandon(c: XAICodec, rid: str) -> list[str]:
    """Ask for a reply, interrupt it before any audio (so xAI may never send its done), then
    commit again: the types of what goes upstream for that commit."""
    c.commit()
    feed(c, {"type": "response.created", "response": {"id": rid}})
    c.interrupt(0)
    return [e["type"] for e in sent(c.commit())]


def test_xai_each_abandoned_response_and_each_swallowed_error_is_counted():
    """CodecStats counts (kept for metrics and debugging) under their own names."""
    c = xai()
    assert abandon(c, "r1") == ["response.create"]
    assert abandon(c, "r2") == ["response.create"]
    race = {"type": "error", "error": {"message": "Cancellation failed: no active response found"}}
    assert feed(c, race, race) == []
    assert (c.stats.counts["abandoned_responses"], c.stats.counts["benign_error"]) == (2, 2)


def test_xai_an_abandoned_response_leaves_no_second_reply_owed():
    c = xai()
    abandon(c, "r1")
    feed(c, {"type": "response.created", "response": {"id": "r2"}})
    assert feed(c, {"type": "response.done", "response": {"id": "r2", "status": "completed"}}) == [Usage(0, 0)]
    assert c.drain_outbound() == []  # one commit, one reply: nothing more is asked for


def test_xai_a_reply_that_spoke_is_not_taken_for_abandoned_after_a_deferred_one():
    """The reply sent when the previous one is done (deferred) is tracked like any other: if
    it had audio before the interrupt, xAI will send its done, so the next commit waits."""
    c = xai()
    c.commit()
    feed(c, {"type": "response.created", "response": {"id": "r1"}})
    assert c.commit() == []  # deferred behind r1
    feed(c, {"type": "response.done", "response": {"id": "r1", "status": "completed"}})
    assert [e["type"] for e in sent(c.drain_outbound())] == ["response.create"]
    feed(c, {"type": "response.created", "response": {"id": "r2"}},
         {"type": "response.output_audio.delta", "item_id": "i2", "delta": b64(b"\0\0")})
    c.interrupt(10)
    assert c.commit() == []  # r2 will be done: asking now would be refused


def test_xai_a_response_done_without_its_response_object_still_ends_the_response():
    assert feed(xai(), {"type": "response.done"}) == [Usage(0, 0)]


def test_xai_a_transcript_already_followed_keeps_its_progress_when_the_memory_is_full():
    """MAX_TRACKED_ITEMS bounds the items whose transcript is followed; an update for one
    already followed must not wipe that memory (its words would be sent twice)."""
    c = xai()
    feed(c, *(updated(f"i{n}", "a ") for n in range(MAX_TRACKED_ITEMS)))
    assert feed(c, updated("i0", "a b ")) == [Transcript("user", "b ", False)]
