"""Replays of Gemini Live sessions as the real service sends them, fed through the codec
with the exact frames expected (issue 19). Sources for each sequence: ai.google.dev Live API
reference (BidiGenerateContentServerContent, ToolCall, GoAway, SessionResumptionUpdate),
google-genai ``types.LiveServerMessage``; the orderings are the ones the issue and peers
report (input transcription arriving after the reply starts, googleapis/js-genai#1429)."""

from __future__ import annotations

import base64
import json

from speko_bridge.frames import Error, ToolCall, Transcript, Usage
from speko_bridge.params import SessionParams, ToolSpec
from speko_bridge.providers.base import AudioDone, AudioOut, ClearAudio, Ready, Reconnect
from speko_bridge.providers.google import GoogleCodec
from speko_bridge.simulator.google import live_message_checker

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
TOOLS = [ToolSpec(name="get_weather", parameters={"type": "object", "properties": {"city": {"type": "string"}}})]
PCM = b"\x01\x00" * 2400  # 100 ms at 24 kHz
check = live_message_checker()


def codec(**kw) -> GoogleCodec:
    return GoogleCodec(SessionParams(provider="google", model=MODEL, **kw))


def audio(pcm: bytes = PCM) -> dict:
    return {"serverContent": {"modelTurn": {"parts": [{"inlineData": {
        "mimeType": "audio/pcm;rate=24000", "data": base64.b64encode(pcm).decode()}}]}}}


def heard(text: str, **kw) -> dict:
    return {"serverContent": {"inputTranscription": {"text": text, **kw}}}


def said(text: str) -> dict:
    return {"serverContent": {"outputTranscription": {"text": text}}}


def usage(prompt_audio: int, response_audio: int) -> dict:
    return {"promptTokenCount": prompt_audio + 10, "responseTokenCount": response_audio,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 10},
                                    {"modality": "AUDIO", "tokenCount": prompt_audio}],
            "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": response_audio}]}


def feed(c: GoogleCodec, *messages) -> list:
    out = []
    for m in messages:
        out += c.receive(json.dumps(m).encode())  # Gemini sends JSON in binary frames
    return out


def sent(messages) -> list[dict]:
    decoded = [json.loads(m) for m in messages]
    assert [check(m) for m in decoded] == [None] * len(decoded)  # google-genai accepts each
    return decoded


def test_turn_with_a_tool_call_and_late_transcription():
    c = codec(tools=TOOLS)
    assert sent(c.start())[0]["setup"]["tools"][0]["functionDeclarations"][0]["behavior"] == "BLOCKING"
    assert feed(c, {"setupComplete": {}}) == [Ready()]
    assert [list(m["realtimeInput"]) for m in sent(c.audio(b"\0\0" * 1600) + c.commit())] == [
        ["activityStart"], ["audio"], ["activityEnd"]]
    out = feed(c,
               heard("What's the"),
               {"toolCall": {"functionCalls": [{"id": "fc-1", "name": "get_weather", "args": {"city": "Paris"}}]}},
               heard(" weather in Paris?"),  # the rest of the user's words, after the call
               {"usageMetadata": usage(32, 0)})
    assert out == [Transcript("user", "What's the", False), ToolCall("fc-1", "get_weather", '{"city": "Paris"}'),
                   Usage(0, 0), Transcript("user", " weather in Paris?", False)]
    # while the call waits, the user's input never reaches Gemini (it would close 1008)
    assert c.audio(b"\0\0" * 160) == [] and c.commit() == []
    (reply,) = sent(c.tool_result("fc-1", '{"temp_c": 21}'))
    assert reply == {"toolResponse": {"functionResponses": [
        {"id": "fc-1", "name": "get_weather", "response": {"temp_c": 21}}]}}
    out = feed(c, audio(), said("It's 21 degrees."), {"serverContent": {"generationComplete": True}},
               {"serverContent": {"turnComplete": True}, "usageMetadata": usage(0, 4)})
    assert out == [AudioOut(PCM, 24000), Transcript("assistant", "It's 21 degrees.", False), AudioDone(),
                   Transcript("user", "What's the weather in Paris?", True),
                   Transcript("assistant", "It's 21 degrees.", True), Usage(32, 4)]  # the call's usage carried
    # the gate is open again: the next turn starts an activity
    assert [list(m["realtimeInput"]) for m in sent(c.audio(b"\0\0"))] == [["activityStart"], ["audio"]]


def test_barge_in():
    c = codec()
    feed(c, {"setupComplete": {}})
    c.audio(b"\0\0")
    c.commit()
    assert feed(c, heard("Tell me a story."), audio(), said("Once upon")) == [
        Transcript("user", "Tell me a story.", False), AudioOut(PCM, 24000), Transcript("assistant", "Once upon", False)]
    assert sent(c.interrupt(played_ms=80)) == [{"realtimeInput": {"activityStart": {}}}]
    # the rest of the interrupted reply is dropped; the user's new activity closes their
    # previous words (nothing more of them will come)
    assert feed(c, audio()) == [Transcript("user", "Tell me a story.", True)]
    out = feed(c, {"serverContent": {"interrupted": True}},
               {"serverContent": {"turnComplete": True}, "usageMetadata": usage(16, 8)})
    assert out == [ClearAudio(), Transcript("assistant", "Once upon", True), Usage(16, 8)]
    assert [list(m["realtimeInput"]) for m in sent(c.audio(b"\0\0") + c.commit())] == [["audio"], ["activityEnd"]]


def test_transcription_after_the_turn_is_final_once_at_the_next_turn():
    c = codec()
    feed(c, {"setupComplete": {}})
    c.audio(b"\0\0")
    c.commit()
    out = feed(c, audio(), {"serverContent": {"turnComplete": True}, "usageMetadata": usage(8, 4)},
               heard("Hello"), heard(" there."))
    assert out == [AudioOut(PCM, 24000), AudioDone(), Usage(8, 4), Transcript("user", "Hello", False),
                   Transcript("user", " there.", False)]
    c.audio(b"\0\0")  # the user's next turn: nothing more of the last one will come
    assert feed(c, heard("Bye.")) == [Transcript("user", "Hello there.", True), Transcript("user", "Bye.", False)]


def test_gemini_3_1_marks_the_transcription_finished():
    c = codec()
    c.commit()
    assert feed(c, heard("Hi.", finished=True), audio()) == [
        Transcript("user", "Hi.", False), Transcript("user", "Hi.", True), AudioOut(PCM, 24000)]
    assert feed(c, {"serverContent": {"turnComplete": True}}) == [AudioDone(), Usage(0, 0)]  # no second final


def test_rejected_turn():
    c = codec()
    c.commit()
    out = feed(c, {"serverContent": {"turnComplete": True, "turnCompleteReason": "RESPONSE_REJECTED"}})
    assert out == [Error("provider_error", "the model did not answer the turn: RESPONSE_REJECTED"), Usage(0, 0)]
    c.commit()
    assert feed(c, {"serverContent": {"turnComplete": True, "turnCompleteReason": "NEED_MORE_INPUT",
                                      "waitingForInput": True}}) == [Usage(0, 0)]  # not a refusal
    assert c.stats.counts["waiting_for_input"] == 1


def test_go_away_resumes_with_the_latest_handle():
    c = codec()
    feed(c, {"setupComplete": {}})
    assert feed(c, {"sessionResumptionUpdate": {"newHandle": "h1", "resumable": True}}) == []
    assert feed(c, {"goAway": {"timeLeft": "50s"}}) == [Reconnect("goAway (time left 50s)")]
    (setup,) = sent(c.start())
    assert setup["setup"]["sessionResumption"] == {"handle": "h1"}
    assert setup["setup"]["contextWindowCompression"] == {"slidingWindow": {}}


def test_a_call_that_never_returns_is_given_up():
    c = codec(tools=TOOLS)
    c.commit()
    feed(c, {"toolCall": {"functionCalls": [{"id": "fc-9", "name": "get_weather", "args": {}}]}})
    second = b"\0\0" * 16000
    for _ in range(14):
        assert c.audio(second) == []  # 14 s of speech held back
    out = sent(c.audio(second))  # the 15th second: the call is answered with an error
    assert out[0] == {"toolResponse": {"functionResponses": [{"id": "fc-9", "name": "get_weather", "response": {
        "error": "no tool result within 15 s of user speech"}}]}}
    assert [list(m["realtimeInput"]) for m in out[1:]] == [["activityStart"], ["audio"]]
    assert c.tool_result("fc-9", "{}") == []  # the late result goes nowhere


def test_output_after_a_turn_complete_in_progress_is_a_response_of_its_own():
    c = codec()
    c.commit()
    out = feed(c, audio(), {"serverContent": {"turnComplete": True, "interactionStatus": "IN_PROGRESS"}},
               audio(), {"serverContent": {"turnComplete": True, "interactionStatus": "IDLE"}})
    assert out == [AudioOut(PCM, 24000), AudioDone(), Usage(0, 0), AudioOut(PCM, 24000), AudioDone(), Usage(0, 0)]
    assert c.stats.counts["interaction_in_progress"] == 1
