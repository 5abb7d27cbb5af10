"""Replays of xAI Voice Agent sessions as the real service sends them, fed through the codec
with the exact frames expected (issue 19). Sources: docs.x.ai Voice Agent API (events,
``response.done`` usage, five voices), fal.ai's xAI proxy page (``session.created`` on
connect), and the behaviours the issue reports from LiveKit (a response cancelled before
audio never done) and pipecat (truncation errors are harmless; partial ``.completed``)."""

from __future__ import annotations

import base64
import json

from speko_bridge.frames import Error, Transcript, Usage
from speko_bridge.params import SessionParams
from speko_bridge.providers.base import AudioDone, AudioOut, Ready
from speko_bridge.providers.xai import XAICodec

PCM = b"\x01\x00" * 2400


def codec(**kw) -> XAICodec:
    return XAICodec(SessionParams(provider="xai", model="grok-voice-latest", **kw))


def feed(c: XAICodec, *events) -> list:
    out = []
    for e in events:
        out += c.receive(json.dumps(e))
    return out


def kinds(messages) -> list[str]:
    return [json.loads(m)["type"] for m in messages]


def ready(c: XAICodec) -> list:
    return feed(c, {"type": "session.created", "session": {"id": "s", "voice": "eve"}},
                {"type": "conversation.created", "conversation": {"id": "conv_1"}},
                {"type": "ping", "timestamp": 1},
                {"type": "session.updated", "session": {"voice": "xai_eve"}})


def test_connect_and_a_turn_with_partial_completed_transcripts():
    c = codec()
    assert ready(c) == [Ready()]
    assert c.stats.unknown_events == 0
    c.audio(PCM)
    c.commit()
    item = {"item_id": "item_1", "content_index": 0}
    out = feed(c,
               {"type": "conversation.item.input_audio_transcription.updated", **item, "transcript": "Book a"},
               {"type": "conversation.item.input_audio_transcription.completed", **item,
                "transcript": "Book a table for", "status": "in_progress"},
               {"type": "conversation.item.input_audio_transcription.completed", **item,
                "transcript": "Book a table for two.", "status": "completed"},
               {"type": "response.created", "response": {"id": "r1"}},
               {"type": "response.output_audio.delta", "response_id": "r1", "item_id": "i2",
                "delta": base64.b64encode(PCM).decode()},
               {"type": "response.output_audio.done", "response_id": "r1", "item_id": "i2"},
               {"type": "response.done", "response": {"id": "r1", "status": "completed"},
                "usage": {"total_tokens": 9, "input_tokens": 6, "output_tokens": 3}})
    assert out == [Transcript("user", "Book ", False), Transcript("user", "a table ", False),
                   Transcript("user", "for two.", False), Transcript("user", "Book a table for two.", True),
                   AudioOut(PCM, 24000, "i2"), AudioDone(), Usage(6, 3)]


def test_a_response_cancelled_before_audio_and_never_done_does_not_hang_the_next():
    c = codec()
    ready(c)
    assert kinds(c.commit()) == ["response.create"]
    feed(c, {"type": "response.created", "response": {"id": "r1"}})
    assert [json.loads(m) for m in c.interrupt(played_ms=0)] == [{"type": "response.cancel", "response_id": "r1"}]
    # no response.done for r1 ever comes (pings keep the socket busy)
    assert feed(c, {"type": "ping", "timestamp": 2}) == []
    c.audio(PCM)
    assert kinds(c.commit()) == ["input_audio_buffer.commit", "response.create"]  # not deferred forever
    assert c.stats.counts["abandoned_responses"] == 1
    # if r1's done turns up after all, it is dropped; the new response goes on
    assert feed(c, {"type": "response.done", "response": {"id": "r1", "status": "cancelled"}}) == []
    assert feed(c, {"type": "response.created", "response": {"id": "r2"}},
                {"type": "response.done", "response": {"id": "r2", "status": "completed"}}) == [Usage(0, 0)]


def test_a_cancel_after_audio_waits_for_done_as_usual():
    c = codec()
    ready(c)
    c.commit()
    feed(c, {"type": "response.created", "response": {"id": "r1"}},
         {"type": "response.output_audio.delta", "response_id": "r1", "item_id": "i1",
          "delta": base64.b64encode(PCM).decode()})
    c.interrupt(played_ms=50)
    assert c.commit() == []  # deferred: r1 is still active and will be done
    out = feed(c, {"type": "response.done", "response": {"id": "r1", "status": "cancelled"}})
    assert out == [AudioDone(), Usage(0, 0)] and kinds(c.drain_outbound()) == ["response.create"]


def test_truncation_errors_are_benign_other_errors_are_not():
    c = codec()
    ready(c)
    err = {"type": "error", "error": {"type": "invalid_request_error",
                                      "message": "Failed to truncate conversation item: not found"}}
    assert feed(c, err) == [] and c.stats.counts["benign_error"] == 1
    other = {"type": "error", "error": {"type": "invalid_request_error", "message": "Unknown tool"}}
    assert feed(c, other) == [Error("provider_error", "Unknown tool")]
