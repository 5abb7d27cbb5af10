"""Gemini codec: turn ends, interrupts and resumption in the orders the basic tests do not
use. What a user would notice: a reply that stays silent after an interrupt, an extra or
missing end of audio, a second turn that breaks the codec, a resume mid-reply or with a
handle Gemini said cannot be resumed. Found by ``make mutants`` (docs/testing.md)."""

from __future__ import annotations

import base64
import json

from speko_bridge.frames import Transcript, Usage
from speko_bridge.params import SessionParams
from speko_bridge.providers.base import AudioDone, AudioOut, ClearAudio, Reconnect
from speko_bridge.providers.google import GoogleCodec


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
