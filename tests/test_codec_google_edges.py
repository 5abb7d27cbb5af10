"""Gemini codec: turn ends, interrupts and resumption in the orders the basic tests do not
use. What a user would notice: a reply that stays silent after an interrupt, an extra or
missing end of audio, a second turn that breaks the codec, a resume mid-reply or with a
handle Gemini said cannot be resumed. Found by ``make mutants`` (docs/testing.md)."""

from __future__ import annotations

import base64
import json

from speko_bridge.frames import ToolCall, Transcript, Usage
from speko_bridge.params import SessionParams
from speko_bridge.providers.base import AudioDone, AudioOut, ClearAudio, Malformed, Ready, Reconnect
from speko_bridge.providers.google import GEMINI_INPUT_RATE, TOOL_WAIT_MAX_MS, GoogleCodec


def codec() -> GoogleCodec:
    return GoogleCodec(SessionParams(provider="google", model="gemini-live"))


def feed(c: GoogleCodec, *messages) -> list:
    out = []
    for m in messages:
        out += c.receive(json.dumps(m).encode())
    return out


def audio(pcm: bytes) -> dict:
    return {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": base64.b64encode(pcm).decode()}}


def turn(*parts) -> dict:
    return {"serverContent": {"modelTurn": {"parts": list(parts)}}}


DONE = {"serverContent": {"turnComplete": True}}
GEN_DONE = {"serverContent": {"generationComplete": True}}
INTERRUPTED = {"serverContent": {"interrupted": True}}
RESUMABLE = {"sessionResumptionUpdate": {"newHandle": "h1", "resumable": True}}
GO_AWAY = {"goAway": {"timeLeft": "5s"}}


def test_audio_end_is_sent_exactly_once_per_reply():
    c = codec()
    assert feed(c, GEN_DONE) == []  # no audio yet: nothing to end
    c.commit()
    assert feed(c, turn(audio(b"\1\0")), DONE) == [AudioOut(b"\1\0", 24000), AudioDone(), Usage(0, 0)]
    assert feed(c, GEN_DONE) == []


def test_after_gemini_confirms_an_interrupt_the_next_reply_is_heard():
    c = codec()
    c.commit()
    feed(c, turn(audio(b"\1\0")))
    c.interrupt(10)
    assert feed(c, turn(audio(b"\2\0"))) == []  # the interrupted reply: dropped
    assert feed(c, INTERRUPTED) == [ClearAudio()]
    assert feed(c, GEN_DONE) == []  # that reply's audio was already ended by the clear
    c.commit()
    assert feed(c, turn(audio(b"\3\0"))) == [AudioOut(b"\3\0", 24000)]


def test_an_empty_audio_part_does_not_hide_the_next_one():
    c = codec()
    c.commit()
    assert feed(c, turn(audio(b""), audio(b"\4\0"))) == [AudioOut(b"\4\0", 24000)]


def test_a_second_turn_with_transcripts_works_like_the_first():
    c = codec()
    for n in range(2):
        c.commit()
        out = feed(c, {"serverContent": {"outputTranscription": {"text": f"reply {n}"}}}, DONE)
        assert out == [Transcript("assistant", f"reply {n}", False), Transcript("assistant", f"reply {n}", True),
                       Usage(0, 0)]


def test_no_resume_while_the_model_is_speaking_even_unprompted():
    """Gemini can speak without a client commit (e.g. continuing after a tool result it
    already had): a transcript means a reply is under way, so goAway must wait."""
    c = codec()
    feed(c, RESUMABLE)
    feed(c, {"serverContent": {"outputTranscription": {"text": "Well,"}}})
    assert feed(c, GO_AWAY) == []
    reconnect = feed(c, DONE, RESUMABLE)
    assert [type(e) for e in reconnect] == [Transcript, Usage, Reconnect]
    assert "goAway" in reconnect[-1].reason


def test_a_handle_gemini_calls_not_resumable_is_never_used():
    c = codec()
    feed(c, {"sessionResumptionUpdate": {"newHandle": "h_not_yet", "resumable": False}})
    assert feed(c, GO_AWAY) == []


def test_resume_reasons_say_goaway():
    c = codec()
    feed(c, RESUMABLE)
    (event,) = feed(c, GO_AWAY)
    assert isinstance(event, Reconnect) and event.reason.startswith("goAway") and "5s" in event.reason


def test_stats_count_each_message_once():
    """The codec's counters (CodecStats, kept for metrics and debugging) are the record of
    protocol drift; the bridge ends a session after a run of malformed events by watching
    malformed_events change, so each one must count exactly once."""
    c = codec()
    feed(c, {"setupComplete": {}}, {"toolCallCancellation": {"ids": ["x"]}}, GO_AWAY)
    assert (c.stats.events, c.stats.unknown_events) == (3, 0)
    feed(c, {"somethingNew": {}}, {"somethingNew": {}})
    assert (c.stats.events, c.stats.unknown_events) == (5, 2)
    c.receive(b"\xff")
    c.receive(b"{")
    feed(c, {"toolCall": {"functionCalls": [{"name": ""}, {"name": ""}]}})
    assert c.stats.malformed_events == 4


def call(*ids: str) -> dict:
    return {"toolCall": {"functionCalls": [{"id": i, "name": "f", "args": {}} for i in ids]}}


def test_user_audio_is_held_back_for_the_full_tool_wait_and_not_a_byte_longer():
    """TOOL_WAIT_MAX_MS of user speech (15 s at 16 kHz) while a call waits: up to its last
    10 ms the audio is dropped, the byte that completes it gives the call up."""
    c = codec()
    c.commit()
    feed(c, call("fc_1"))
    almost = GEMINI_INPUT_RATE * 2 * (TOOL_WAIT_MAX_MS - 10) // 1000
    assert c.audio(b"\0" * almost) == []
    out = [json.loads(m) for m in c.audio(b"\0" * (GEMINI_INPUT_RATE * 2 // 100))]
    assert out[0]["toolResponse"]["functionResponses"][0]["id"] == "fc_1"
    assert [list(m["realtimeInput"]) for m in out[1:]] == [["activityStart"], ["audio"]]


def test_what_the_tool_gate_dropped_is_counted():
    """CodecStats counts (kept for metrics and debugging): the audio and commits dropped while
    a call waited, and the calls given up, each under its own name."""
    c = codec()
    c.commit()
    feed(c, call("fc_1"))
    assert c.audio(b"\0\0" * 10) == [] and c.audio(b"\0\0" * 5) == []
    assert c.commit() == [] and c.commit() == []
    c.interrupt(0)
    assert c.stats.counts == {"audio_bytes_dropped_during_tool_call": 30,
                              "commits_dropped_during_tool_call": 2, "tool_calls_abandoned": 1}


def test_cancelling_one_of_two_waiting_calls_keeps_the_gate_closed_for_the_other():
    c = codec()
    c.commit()
    feed(c, call("fc_1", "fc_2"))
    feed(c, {"toolCallCancellation": {"ids": ["fc_1"]}})
    assert c.audio(b"\0\0") == []  # fc_2 still waits: input would end the session (1008)
    c.tool_result("fc_2", "{}")
    # the gate is open again; the model answers the result, so the user's audio waits for
    # the end of that answer (an activity now would cut it) and opens the next turn then
    assert c.audio(b"\0\0") == []
    feed(c, DONE)
    assert [list(json.loads(m)["realtimeInput"]) for m in c.drain_outbound()] == [["activityStart"], ["audio"]]


def test_usage_reported_in_parts_within_a_turn_adds_up():
    c = codec()
    c.commit()
    part = {"usageMetadata": {"promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 3}],
                              "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 5}]}}
    assert feed(c, part, turn(audio(b"\1\0")), part, DONE) == [
        AudioOut(b"\1\0", 24000), AudioDone(), Usage(6, 10)]


def test_a_turn_complete_with_no_reply_under_way_adds_no_usage_frame():
    """One usage frame per response: a stray turnComplete (none open, or a second one for a
    turn already ended) must not look like another response to the client."""
    c = codec()
    assert feed(c, DONE) == []
    c.commit()
    assert feed(c, turn(audio(b"\1\0")), DONE) == [AudioOut(b"\1\0", 24000), AudioDone(), Usage(0, 0)]
    assert feed(c, DONE) == []


def test_a_call_whose_args_are_not_utf8_does_not_hide_the_calls_after_it():
    c = codec()
    bad = (b'{"toolCall": {"functionCalls": [{"id": "c1", "name": "f", "args": {"x": "\xff"}},'
           b' {"id": "c2", "name": "g", "args": {}}]}}')
    assert c.receive(bad) == [Malformed("functionCall args are not UTF-8"), ToolCall("c2", "g", "{}"), Usage(0, 0)]


def test_a_message_nested_too_deep_to_read_is_reported_as_unreadable():
    c = codec()
    deep = '{"x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert c.receive(deep) == [Malformed("unreadable message: RecursionError")]
    assert feed(c, {"setupComplete": {}}) == [Ready()]
