"""The Gemini codec's typed turns, hands-free turns and barge-in, sans-IO: exact messages up,
exact events down (the bridge-level tests are in tests/test_handsfree.py)."""

from __future__ import annotations

import json

import msgspec

from speko_bridge.frames import ToolCall, Transcript, Usage
from speko_bridge.params import ServerTurns, SessionParams
from speko_bridge.providers.base import AudioOut, SpeechStarted, SpeechStopped
from speko_bridge.providers.google import GoogleCodec

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
AUDIO = '{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=24000","data":"AAAA"}}]}}}'
DONE = '{"serverContent":{"turnComplete":true}}'
START = '{"voiceActivity":{"voiceActivityType":"ACTIVITY_START"}}'
END = '{"voiceActivity":{"voiceActivityType":"ACTIVITY_END"}}'
CALL = '{"toolCall":{"functionCalls":[{"id":"c1","name":"get_weather","args":{"city":"Paris"}}]}}'


def codec(server: bool = False) -> GoogleCodec:
    c = GoogleCodec(SessionParams(provider="google", model=MODEL, turn_detection=ServerTurns() if server else None))
    c.start()
    return c


def test_a_typed_turn_in_manual_mode_is_a_complete_client_turn_and_ends_with_one_usage():
    c = codec()
    (msg,) = c.text("hello")
    assert json.loads(msg) == {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "hello"}]}],
                                                 "turnComplete": True}}
    assert c.receive(DONE) == [Usage(0, 0)]
    assert c.receive(DONE) == []  # nothing asked for since


def test_a_typed_turn_in_server_mode_is_realtime_text():
    c = codec(server=True)
    assert [json.loads(m) for m in c.text("hi")] == [{"realtimeInput": {"text": "hi"}}]


def test_two_typed_turns_in_a_row_end_with_two_usages():
    c = codec()
    c.text("one")
    c.text("two")
    assert c.receive(DONE) == [Usage(0, 0)]
    assert c.receive(DONE) == [Usage(0, 0)]  # the answer to "two", cut before any output
    assert c.receive(DONE) == []


def test_a_typed_turn_while_a_tool_call_waits_is_dropped_and_counted():
    c = codec()
    c.commit()
    assert [type(e) for e in c.receive(CALL)] == [ToolCall, Usage]
    assert c.text("meanwhile") == []
    assert c.stats.counts["texts_dropped_during_tool_call"] == 1


def test_server_mode_sends_no_activity_signals_and_commit_ends_the_audio_stream():
    c = codec(server=True)
    (frame,) = c.audio(b"\x01\x00" * 160)
    assert "activityStart" not in frame and json.loads(frame)["realtimeInput"]["audio"]["data"]
    assert [json.loads(m) for m in c.commit()] == [{"realtimeInput": {"audioStreamEnd": True}}]
    assert c.receive(DONE) == [Usage(0, 0)]  # the commit asked for a reply: it ends with a usage


def test_speech_events_come_once_each_and_the_end_of_speech_owes_a_reply():
    c = codec(server=True)
    assert c.receive(START) == [SpeechStarted()]
    assert c.receive(START) == []
    assert c.receive(END) == [SpeechStopped()]
    assert c.receive(END) == []
    assert c.receive(DONE) == [Usage(0, 0)]  # the reply the detector asked for, cut before output
    assert c.receive(DONE) == []


def test_the_models_first_output_is_the_end_of_speech_when_gemini_sent_none():
    c = codec(server=True)
    c.receive(START)
    events = c.receive(AUDIO)
    assert events[0] == SpeechStopped() and type(events[1]) is AudioOut
    assert c.receive(DONE)[-1] == Usage(0, 0)


def test_interrupted_is_the_start_of_speech_in_server_mode_only():
    server, manual = codec(server=True), codec()
    assert SpeechStarted() in server.receive('{"serverContent":{"interrupted":true}}')
    assert SpeechStarted() not in manual.receive('{"serverContent":{"interrupted":true}}')


def test_barge_in_cuts_only_a_reply_already_under_way():
    c = codec()
    c.commit()
    assert c.barge_in(100) == []  # no output yet: the reply to come is the answer
    c.receive(AUDIO)
    assert [json.loads(m) for m in c.barge_in(100)] == [{"realtimeInput": {"activityStart": {}}}]
    assert c.receive(AUDIO) == []  # the rest of the cut reply is dropped
    s = codec(server=True)
    s.commit()
    s.receive(AUDIO)
    assert s.barge_in(100) == []  # Gemini's own detector cuts it; nothing to send


def test_user_words_stay_open_until_the_turn_ends_even_after_the_models_output():
    c = codec(server=True)
    c.receive('{"serverContent":{"inputTranscription":{"text":"hel"}}}')
    out = c.receive(AUDIO)
    assert not [e for e in out if type(e) is Transcript and e.final]
    done = c.receive(DONE)
    assert Transcript("user", "hel", True) in done


def test_every_request_is_one_turn_ended_by_one_usage():
    for ask in (lambda c: c.commit(), lambda c: c.text("t"), lambda c: c.tool_result("c9", "{}")):
        for server in (False, True):
            c = codec(server=server)
            c.text("first")
            ask(c)
            assert c.receive(DONE) == [Usage(0, 0)], (ask, server)
            assert c.receive(DONE) == [Usage(0, 0)], (ask, server)
            assert c.receive(DONE) == [], (ask, server)


def test_output_nobody_asked_for_is_one_turn():
    c = codec(server=True)
    assert [type(e) for e in c.receive(AUDIO)] == [AudioOut]
    assert c.receive(DONE)[-1] == Usage(0, 0)  # after the audio's end
    assert c.receive(DONE) == []
    assert [type(e) for e in c.receive(CALL)] == [ToolCall, Usage]  # a call nobody asked for ends its turn
    assert c.receive(DONE) == []


def test_speech_ended_by_the_detector_adds_a_turn_to_those_asked_for():
    c = codec(server=True)
    c.text("typed")
    c.receive(START)
    c.receive(END)
    assert c.receive(DONE) == [Usage(0, 0)]
    assert c.receive(DONE) == [Usage(0, 0)]
    assert c.receive(DONE) == []


def test_a_call_given_up_on_interrupt_is_a_turn_of_its_own():
    c = codec()
    c.commit()
    c.receive(CALL)  # the call ends the commit's turn
    c.text("first")  # dropped: the call waits
    c.commit()  # dropped too
    up = c.interrupt(0)  # gives the call up: Gemini answers again
    assert json.loads(up[0])["toolResponse"]["functionResponses"][0]["response"]["error"]
    c.text("second")
    assert c.receive(DONE) == [Usage(0, 0)]
    assert c.receive(DONE) == [Usage(0, 0)]
    assert c.receive(DONE) == []


def changed(c: GoogleCodec) -> SessionParams:
    return msgspec.structs.replace(c.params, system_prompt="Answer in French.")


def test_after_any_input_a_new_session_is_refused_and_before_it_a_new_setup_is_made():
    assert codec().configure(changed(codec())).redo  # nothing said yet: a new setup
    said = {
        "audio": lambda c: c.audio(b"\x01\x00" * 160),
        "commit": lambda c: c.commit(),
        "tool result": lambda c: (c.receive(CALL), c.tool_result("c1", '{"ok":true}')),
    }
    for what, say in said.items():
        c = codec()
        say(c)
        done = c.configure(changed(c))
        assert done.refused == ("system_prompt",) and not done.redo, (what, done)


def test_text_items_then_audio_go_up_as_an_incomplete_turn_before_the_speech():
    c = codec()
    assert c.text("my order is 42", respond=False) == []
    first, start, frame = [json.loads(m) for m in c.audio(b"\x01\x00" * 160)]
    assert first == {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "my order is 42"}]}],
                                       "turnComplete": False}}
    assert start == {"realtimeInput": {"activityStart": {}}} and "audio" in frame["realtimeInput"]


def test_text_items_then_commit_are_one_complete_turn_whose_answer_an_interrupt_cuts():
    c = codec()
    c.text("my order is 42", respond=False)
    (turn,) = [json.loads(m) for m in c.commit()]
    assert turn == {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "my order is 42"}]}],
                                      "turnComplete": True}}
    assert [json.loads(m) for m in c.interrupt(0)] == [{"realtimeInput": {"activityStart": {}}}]
    assert c.receive(AUDIO) == []  # the cut answer's audio is dropped


def test_an_interrupt_after_a_hands_free_commit_drops_the_reply_to_come():
    s = codec(server=True)
    s.audio(b"\x01\x00" * 160)
    s.commit()
    assert s.interrupt(0) == []  # Gemini's own detector cuts; nothing to send
    assert not [e for e in s.receive(AUDIO) if type(e) is AudioOut]


def test_barge_in_after_a_finished_reply_cuts_nothing_of_the_next_one_not_begun():
    c = codec()
    c.commit()
    c.receive(AUDIO)
    c.receive(DONE)
    c.commit()  # the next turn: its reply has not begun
    assert c.barge_in(100) == []


def test_barge_in_during_a_tool_call_gives_the_call_up():
    c = codec()
    c.commit()
    c.receive(CALL)
    first = json.loads(c.barge_in(100)[0])
    assert first["toolResponse"]["functionResponses"][0]["id"] == "c1"
    assert "error" in first["toolResponse"]["functionResponses"][0]["response"]


def test_a_tool_call_while_the_user_speaks_hands_free_ends_the_speech():
    s = codec(server=True)
    s.receive(START)
    assert SpeechStopped() in s.receive(CALL)
