"""Each provider codec maps ``turnDetection`` to the provider's own mechanism, in messages the
provider's published types accept, and reads the provider's speech events (codec public
methods only; the end-to-end behaviour is in ``test_handsfree.py``)."""

from __future__ import annotations

import json

import pytest

from speko_bridge.frames import Usage
from speko_bridge.params import ManualTurns, SemanticTurns, ServerTurns, SessionParams
from speko_bridge.providers.base import AudioOut, ClearAudio, SpeechStarted, SpeechStopped
from speko_bridge.providers.google import GoogleCodec
from speko_bridge.providers.openai import OpenAICodec
from speko_bridge.providers.xai import XAICodec
from speko_bridge.simulator.google import live_message_checker
from speko_bridge.simulator.openai import client_event_checker
from speko_bridge.simulator.xai import xai_event_checker


def params(provider: str, turn) -> SessionParams:
    model = {"openai": "gpt-realtime", "google": "gemini-2.5-flash-native-audio-preview-12-2025", "xai": "grok-voice-latest"}
    return SessionParams(provider=provider, model=model[provider], turn_detection=turn)


@pytest.fixture(scope="module")
def openai_check():
    return client_event_checker()


def test_openai_server_and_semantic_turns(openai_check):
    start = OpenAICodec(params("openai", ServerTurns(silence_ms=700, prefix_ms=200, sensitivity="high"))).start()
    assert openai_check(json.loads(start[0])) is None
    td = json.loads(start[0])["session"]["audio"]["input"]["turn_detection"]
    assert td == {"type": "server_vad", "threshold": 0.3, "prefix_padding_ms": 200, "silence_duration_ms": 700,
                  "create_response": True, "interrupt_response": True}
    start = OpenAICodec(params("openai", SemanticTurns(eagerness="low"))).start()
    assert openai_check(json.loads(start[0])) is None
    td = json.loads(start[0])["session"]["audio"]["input"]["turn_detection"]
    assert td == {"type": "semantic_vad", "eagerness": "low", "create_response": True, "interrupt_response": True}
    start = OpenAICodec(params("openai", ServerTurns())).start()  # provider defaults
    td = json.loads(start[0])["session"]["audio"]["input"]["turn_detection"]
    assert td == {"type": "server_vad", "create_response": True, "interrupt_response": True}
    start = OpenAICodec(params("openai", SemanticTurns())).start()  # OpenAI's own eagerness
    assert openai_check(json.loads(start[0])) is None
    td = json.loads(start[0])["session"]["audio"]["input"]["turn_detection"]
    assert td == {"type": "semantic_vad", "create_response": True, "interrupt_response": True}
    for manual in (None, ManualTurns()):
        start = OpenAICodec(params("openai", manual)).start()
        assert json.loads(start[0])["session"]["audio"]["input"]["turn_detection"] is None


def test_openai_speech_events_by_mode():
    started = '{"type":"input_audio_buffer.speech_started","audio_start_ms":1,"item_id":"i"}'
    stopped = '{"type":"input_audio_buffer.speech_stopped","audio_end_ms":9,"item_id":"i"}'
    hands_free = OpenAICodec(params("openai", ServerTurns()))
    assert hands_free.receive(started) == [SpeechStarted()]
    assert hands_free.receive(stopped) == [SpeechStopped()]
    manual = OpenAICodec(params("openai", None))  # VAD turned on by an OpenAI-compatible client
    assert manual.receive(started) == [ClearAudio()]
    assert manual.receive(stopped) == []


def test_openai_commit_after_the_vad_committed_sends_no_empty_commit():
    codec = OpenAICodec(params("openai", ServerTurns()))
    codec.audio(b"\0\0" * 2400)
    codec.receive('{"type":"input_audio_buffer.committed","item_id":"i","previous_item_id":null}')
    assert [json.loads(m)["type"] for m in codec.commit()] == ["response.create"]


def test_xai_server_vad():
    check = xai_event_checker()
    start = XAICodec(params("xai", ServerTurns(silence_ms=400, sensitivity="low"))).start()
    assert check(json.loads(start[0])) is None
    td = json.loads(start[0])["session"]["turn_detection"]
    assert td == {"type": "server_vad", "threshold": 0.7, "silence_duration_ms": 400}
    assert json.loads(XAICodec(params("xai", None)).start()[0])["session"]["turn_detection"] is None


def test_gemini_automatic_activity_detection():
    check = live_message_checker()
    codec = GoogleCodec(params("google", ServerTurns(silence_ms=800, prefix_ms=100, sensitivity="low")))
    setup = json.loads(codec.start()[0])
    assert check(setup) is None
    assert setup["setup"]["realtimeInputConfig"] == {
        "automaticActivityDetection": {"disabled": False, "startOfSpeechSensitivity": "START_SENSITIVITY_LOW",
                                       "endOfSpeechSensitivity": "END_SENSITIVITY_LOW", "prefixPaddingMs": 100,
                                       "silenceDurationMs": 800},
        "activityHandling": "START_OF_ACTIVITY_INTERRUPTS"}
    medium = json.loads(GoogleCodec(params("google", ServerTurns(sensitivity="medium"))).start()[0])
    assert medium["setup"]["realtimeInputConfig"]["automaticActivityDetection"] == {"disabled": False}
    # no activity signals in this mode: audio goes as it is, a commit ends the audio stream
    sent = [json.loads(m) for m in codec.audio(b"\1\0" * 160) + codec.commit()]
    assert all(check(m) is None for m in sent)
    assert [list(m["realtimeInput"]) for m in sent] == [["audio"], ["audioStreamEnd"]]
    manual = json.loads(GoogleCodec(params("google", None)).start()[0])
    assert manual["setup"]["realtimeInputConfig"] == {"automaticActivityDetection": {"disabled": True}}


def test_gemini_speech_events():
    codec = GoogleCodec(params("google", ServerTurns()))
    codec.start()
    assert codec.receive('{"voiceActivity":{"voiceActivityType":"ACTIVITY_START"}}') == [SpeechStarted()]
    assert codec.receive('{"voiceActivity":{"voiceActivityType":"ACTIVITY_END"}}') == [SpeechStopped()]
    # without voiceActivity: "interrupted" is the start, the first part of the reply the stop
    assert codec.receive('{"serverContent":{"interrupted":true}}') == [SpeechStarted(), ClearAudio()]
    audio = '{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=24000","data":"AAA="}}]}}}'
    events = codec.receive(audio)
    assert [type(e) for e in events] == [SpeechStopped, AudioOut]
    # the end of an interrupted turn is not the end of the user's speech
    codec.receive('{"voiceActivity":{"voiceActivityType":"ACTIVITY_START"}}')
    assert SpeechStopped() not in codec.receive('{"serverContent":{"turnComplete":true}}')
    manual = GoogleCodec(params("google", None))
    assert manual.receive('{"voiceActivity":{"voiceActivityType":"ACTIVITY_START"}}') == []


def test_one_usage_ends_every_openai_response_failed_included():
    codec = OpenAICodec(params("openai", None))
    failed = codec.receive('{"type":"response.done","response":{"id":"r","status":"failed","status_details":'
                           '{"type":"failed","error":{"type":"server_error","message":"boom"}}}}')
    assert [type(e).__name__ for e in failed] == ["Error", "Usage"] and failed[-1] == Usage(0, 0)
    cancelled = codec.receive('{"type":"response.done","response":{"id":"r2","status":"cancelled","usage":'
                              '{"input_token_details":{"audio_tokens":4},"output_token_details":{"audio_tokens":2}}}}')
    assert cancelled == [Usage(4, 2)]


def test_one_usage_ends_every_gemini_turn():
    codec = GoogleCodec(params("google", None))
    codec.start()
    usage = '{"promptTokensDetails":[{"modality":"AUDIO","tokenCount":5}]}'
    codec.commit()  # a turn the model answers with nothing: zeros end it
    assert codec.receive('{"serverContent":{"turnComplete":true}}') == [Usage(0, 0)]
    codec.commit()  # usage riding on turnComplete
    assert codec.receive('{"serverContent":{"turnComplete":true},"usageMetadata":%s}' % usage) == [Usage(5, 0)]
    # usage reported between turns is carried by the next turn's end, never a usage of its own
    assert codec.receive('{"usageMetadata":%s}' % usage) == []
    assert codec.receive('{"serverContent":{"turnComplete":true}}') == []  # no turn under way
    codec.commit()
    assert codec.receive('{"serverContent":{"turnComplete":true}}') == [Usage(5, 0)]
