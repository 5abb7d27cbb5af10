"""The OpenAI-compatible endpoint with Gemini or xAI behind it, sans-IO: the client codec
composed with the real provider codec as the runner composes them (``Configure`` ->
``Codec.configure`` -> ``ClientCodec.configured``). What a real client sends right after
connecting applies; turn detection maps to the provider's; text items wait for
``response.create``; a foreign voice keeps the session's; detected turns and barge-in are
written as OpenAI writes them. Every event is validated against the ``openai`` types."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speko_bridge.clientproto.base import (
    Configure,
    FlushAudio,
    Invalid,
    Reply,
    Respond,
    SendAudio,
    SendText,
)
from speko_bridge.clientproto.openai_compat import OpenAICompatCodec
from speko_bridge.frames import Speech, Transcript, Usage
from speko_bridge.params import ManualTurns, ServerTurns, SessionParams, ToolSpec
from speko_bridge.providers.google import GoogleCodec
from speko_bridge.providers.xai import XAICodec

from .test_clientproto import SERVER_EVENT, server_events

TOOLS = [ToolSpec(name="get_weather", parameters={"type": "object", "properties": {}})]
#: What the OpenAI Agents SDK (openai-agents 0.24) sends first at its defaults.
AGENTS_SDK_UPDATE = {"type": "realtime", "model": "gpt-realtime", "output_modalities": ["audio"],
                     "instructions": "You are a pirate.",
                     "tools": [{"type": "function", "name": "lookup", "description": "Look it up.",
                                "parameters": {"type": "object", "properties": {"q": {"type": "string"}},
                                               "additionalProperties": False}}],
                     "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                         "transcription": {"model": "gpt-4o-mini-transcribe"},
                                         "turn_detection": {"type": "semantic_vad", "interrupt_response": True}},
                               "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "ash"}}}
CODECS = {"google": GoogleCodec, "xai": XAICodec}


class Pair:
    """One compat client codec and one provider codec, wired as the runner wires them."""

    def __init__(self, provider: str, **mint) -> None:
        params = SessionParams(provider=provider, model="m", **mint)
        self.client = OpenAICompatCodec(params, "sess_0123456789", provider, 1_900_000_000)
        self.provider = CODECS[provider](params)
        self.upstream = list(self.provider.start())
        self.redos = 0

    def send(self, event: dict) -> list[dict]:
        """A client event: what the client hears back (validated), the intents applied."""
        heard = []
        for intent in self.client.receive_text(json.dumps(event)):
            if isinstance(intent, (Reply, Invalid)):
                heard += server_events([intent])
            elif isinstance(intent, Configure):
                done = self.provider.configure(intent.params)
                if done.redo:
                    self.redos += 1
                    self.upstream += self.provider.start()
                self.upstream += done.messages
                heard += server_events(self.client.configured(self.provider.params, done.refused))
            elif isinstance(intent, SendAudio):
                self.upstream += self.provider.audio(intent.pcm[: len(intent.pcm) // 2 * 2])
            elif isinstance(intent, Respond):
                self.upstream += self.provider.commit() if intent.commit else self.provider.respond()
            elif isinstance(intent, SendText):
                self.upstream += self.provider.text(intent.text, intent.respond)
        return heard

    def update(self, session: dict) -> list[dict]:
        return self.send({"type": "session.update", "event_id": "u1", "session": session})

    def append(self, seconds: float = 0.1) -> list[dict]:
        pcm = bytes(2 * int(24000 * seconds))
        return self.send({"type": "input_audio_buffer.append", "audio": _b64(pcm)})


def _b64(pcm: bytes) -> str:
    import base64
    return base64.b64encode(pcm).decode()


def kinds(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


# --------------------------------------------------------------------------- session.update


@pytest.mark.parametrize("provider", ["google", "xai"])
def test_the_agents_sdk_first_update_applies_with_no_error(provider):
    p = Pair(provider, system_prompt="Minted.", tools=TOOLS)
    heard = p.update(AGENTS_SDK_UPDATE)
    assert kinds(heard) == ["session.updated"]  # no error event
    session = heard[0]["session"]
    assert session["instructions"] == "You are a pirate."
    assert [t["name"] for t in session["tools"]] == ["lookup"]
    # semantic_vad is the provider's own server VAD (neither has a semantic one)
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    # "ash" is OpenAI's: the provider's default voice stays, and says so
    assert session["audio"]["output"]["voice"] == {"google": "Puck", "xai": "eve"}[provider]
    assert p.provider.params.system_prompt == "You are a pirate."
    assert p.provider.params.turn_detection == ServerTurns()
    assert p.client.declared_tools() == frozenset({"lookup"})
    if provider == "google":  # a new setup carries it (the first was sent at connect)
        assert p.redos == 1
        setup = json.loads(p.upstream[-1])["setup"]
        assert setup["systemInstruction"]["parts"][0]["text"] == "You are a pirate."
        assert setup["realtimeInputConfig"]["automaticActivityDetection"]["disabled"] is False
        assert setup["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"] == "Puck"
        assert "sessionResumption" in setup and not setup["sessionResumption"]
    else:  # xAI takes session.update as it comes
        update = json.loads(p.upstream[-1])
        assert update["type"] == "session.update" and update["session"]["instructions"] == "You are a pirate."
        assert update["session"]["turn_detection"] == {"type": "server_vad"}
        assert update["session"]["voice"] == "eve"
        assert [t["name"] for t in update["session"]["tools"]] == ["lookup"]


@pytest.mark.parametrize("provider", ["google", "xai"])
def test_a_second_update_that_changes_nothing_sends_nothing(provider):
    p = Pair(provider)
    p.update(AGENTS_SDK_UPDATE)
    sent = len(p.upstream)
    (updated,) = p.update({"type": "realtime", "model": "gpt-realtime", "tracing": "auto"})
    assert updated["type"] == "session.updated" and updated["session"]["instructions"] == "You are a pirate."
    assert len(p.upstream) == sent and p.redos == (provider == "google")


@pytest.mark.parametrize("voice, expected", [("alloy", "Kore"), ("Charon", "Charon"), ("charon", "charon"),
                                             ({"id": "custom"}, "Kore")])
def test_gemini_takes_its_own_voices_and_keeps_the_session_voice_for_another_providers(voice, expected):
    p = Pair("google", voice="Kore")
    heard = p.update({"audio": {"output": {"voice": voice}}})
    assert kinds(heard) == ["session.updated"]
    assert heard[0]["session"]["audio"]["output"]["voice"] == expected
    setup = json.loads(p.upstream[-1])["setup"]
    assert setup["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"] == expected


def test_xai_voice_of_another_provider_keeps_the_session_voice():
    p = Pair("xai", voice="rex")
    (updated,) = p.update({"voice": "alloy"})  # the beta's top-level voice, as Mastra sends it
    assert updated["session"]["audio"]["output"]["voice"] == "rex"
    (updated,) = p.update({"voice": "Ara"})
    assert updated["session"]["audio"]["output"]["voice"] == "Ara"
    assert json.loads(p.upstream[-1])["session"]["voice"] == "Ara"


def test_gemini_after_the_first_input_refuses_changes_by_name_and_keeps_the_session():
    p = Pair("google", system_prompt="Minted.")
    p.append()
    err, updated = p.update({"instructions": "Other.", "audio": {"input": {"turn_detection": None},
                                                                "output": {"voice": "Kore"}}})
    assert err["error"]["code"] == "unsupported_for_provider"
    assert err["error"]["param"] == "session.instructions" and err["error"]["event_id"] is None
    assert "session.instructions, session.audio.output.voice" in err["error"]["message"]
    assert updated["session"]["instructions"] == "Minted." and p.redos == 0
    assert updated["session"]["audio"]["output"]["voice"] == "Puck"
    assert p.provider.params.system_prompt == "Minted."


def test_xai_takes_changes_after_the_first_turn_too():
    p = Pair("xai", system_prompt="Minted.")
    p.append()
    p.send({"type": "response.create"})
    (updated,) = [e for e in p.update({"instructions": "Other."}) if e["type"] == "session.updated"]
    assert updated["session"]["instructions"] == "Other."
    assert json.loads(p.upstream[-1])["session"]["instructions"] == "Other."


@pytest.mark.parametrize("detection, expected", [
    (None, ManualTurns()),
    ({"type": "server_vad"}, ServerTurns()),
    ({"type": "server_vad", "threshold": 0.8, "prefix_padding_ms": 250, "silence_duration_ms": 700},
     ServerTurns(silence_ms=700, prefix_ms=250, sensitivity="low")),
    ({"type": "server_vad", "threshold": 0.2, "silence_duration_ms": 10, "prefix_padding_ms": 99999},
     ServerTurns(silence_ms=100, prefix_ms=2000, sensitivity="high")),
    ({"type": "server_vad", "threshold": 0.5}, ServerTurns(sensitivity="medium")),
    ({"type": "semantic_vad", "eagerness": "high"}, ServerTurns()),
])
def test_turn_detection_maps_to_the_sessions_modes(detection, expected):
    p = Pair("xai")
    (updated,) = p.update({"audio": {"input": {"turn_detection": detection}}})
    assert p.provider.params.turn_detection == expected
    shown = updated["session"]["audio"]["input"]["turn_detection"]
    assert (shown is None) == (expected == ManualTurns())


@pytest.mark.parametrize("session, param", [
    ({"instructions": 5}, "session.instructions"),
    ({"instructions": "x" * 40000}, "session.instructions"),
    ({"tools": 5}, "session.tools"),
    ({"tools": [{"type": "function", "name": "bad name!"}]}, "session.tools[0]"),
    ({"tools": [{"type": "function", "name": "a"}, {"type": "function", "name": "a"}]}, "session.tools"),
    ({"tools": [{"type": "mcp", "server_label": "x"}]}, "session.tools[0]"),
    ({"audio": 5}, "session.audio"),
    ({"audio": {"input": {"turn_detection": {"type": "magic_vad"}}}}, "session.audio.input.turn_detection.type"),
    ({"audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": "hi"}}}},
     "session.audio.input.turn_detection.threshold"),
    ({"turn_detection": 5}, "session.turn_detection"),
])
def test_a_bad_value_is_invalid_and_changes_nothing(session, param):
    p = Pair("xai", system_prompt="Minted.")
    sent = len(p.upstream)
    (err,) = p.update(session)
    assert err["type"] == "error" and err["error"]["code"] == "invalid_value" and err["error"]["param"] == param
    assert len(p.upstream) == sent and p.provider.params.system_prompt == "Minted."


@pytest.mark.parametrize("session, refused", [
    ({"output_modalities": ["text"], "instructions": "Applied."}, "session.output_modalities"),
    ({"modalities": ["text"], "instructions": "Applied."}, "session.modalities"),
    ({"tool_choice": "required", "instructions": "Applied."}, "session.tool_choice"),
    ({"audio": {"input": {"format": {"type": "audio/pcmu"}}}, "instructions": "Applied."},
     "session.audio.input.format"),
    ({"audio": {"output": {"format": {"type": "audio/pcm", "rate": 16000}}}, "instructions": "Applied."},
     "session.audio.output.format"),
    ({"frobnicate": True, "instructions": "Applied."}, "session.frobnicate"),
])
def test_what_cannot_be_honoured_is_named_and_the_rest_applies(session, refused):
    p = Pair("google")
    err, updated = p.update(session)
    assert err["error"]["code"] == "unsupported_for_provider" and err["error"]["param"] == refused
    assert err["error"]["event_id"] == "u1"
    assert updated["session"]["instructions"] == "Applied."


def test_tool_choice_none_gives_the_provider_no_tools_and_auto_gives_them_back():
    p = Pair("xai", tools=TOOLS)
    (updated,) = p.update({"tool_choice": "none"})
    assert updated["session"]["tool_choice"] == "none" and updated["session"]["tools"][0]["name"] == "get_weather"
    assert json.loads(p.upstream[-1])["session"]["tools"] == []
    (updated,) = p.update({"tool_choice": "auto"})
    assert [t["name"] for t in json.loads(p.upstream[-1])["session"]["tools"]] == ["get_weather"]


# --------------------------------------------------------------------------- text items


@pytest.mark.parametrize("provider", ["google", "xai"])
def test_a_text_item_is_added_and_answered_only_at_response_create(provider):
    p = Pair(provider)
    sent = len(p.upstream)
    heard = p.send({"type": "conversation.item.create", "item": {
        "id": "item_t1", "type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "What is the weather?"}]}})
    assert kinds(heard) == ["conversation.item.added", "conversation.item.done"]
    assert heard[1]["item"]["id"] == "item_t1" and heard[1]["item"]["content"][0]["text"] == "What is the weather?"
    asked = p.upstream[sent:]
    if provider == "google":
        assert asked == []  # held: Gemini would answer a complete turn at once
    else:
        (item,) = map(json.loads, asked)
        assert item["type"] == "conversation.item.create"  # no response.create yet
    assert kinds(p.send({"type": "response.create"})) == []  # nothing to commit: no committed event
    sent_now = [json.loads(m) for m in p.upstream[sent + len(asked):]]
    if provider == "google":
        (content,) = sent_now
        assert content["clientContent"] == {"turns": [{"role": "user", "parts": [{"text": "What is the weather?"}]}],
                                            "turnComplete": True}
    else:
        assert [m["type"] for m in sent_now] == ["response.create"]


def test_gemini_text_items_before_speech_go_up_before_the_activity():
    p = Pair("google")
    p.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Context."}]}})
    sent = len(p.upstream)
    p.append()
    first, second = (json.loads(m) for m in p.upstream[sent:sent + 2])
    assert first == {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "Context."}]}],
                                       "turnComplete": False}}
    assert "activityStart" in second["realtimeInput"]


@pytest.mark.parametrize("content", [[], [{"type": "input_audio", "audio": ""}], "hi",
                                     [{"type": "input_text", "text": 5}]])
def test_a_user_message_that_is_not_text_is_refused(content):
    p = Pair("xai")
    (err,) = p.send({"type": "conversation.item.create",
                     "item": {"type": "message", "role": "user", "content": content}})
    assert err["error"]["code"] in ("unsupported_for_provider", "invalid_value")
    assert err["error"]["param"] == "item.content"


# --------------------------------------------------------------------------- commits and detected turns


def test_response_create_over_uncommitted_audio_commits_it_like_a_commit():
    p = Pair("google")
    p.append(0.5)
    c = p.client
    intents = c.receive_text('{"type":"response.create"}')
    assert isinstance(intents[0], FlushAudio) and isinstance(intents[-1], Respond)
    heard = server_events(intents)
    assert kinds(heard) == ["input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"]
    item_id = heard[0]["item_id"]
    (done,) = server_events(c.frame(Transcript("user", "hello", True)))
    assert done["item_id"] == item_id and done["usage"]["seconds"] == 0.5
    # nothing new appended: the next response.create commits nothing
    assert [type(i) for i in c.receive_text('{"type":"response.create"}')] == [Respond]


def written(c: OpenAICompatCodec, items) -> list[dict]:
    out = []
    for item in items:
        text = item.text if hasattr(item, "text") else c.audio_message(item)
        event = json.loads(text)
        SERVER_EVENT.validate_python(event)
        out.append(event)
    return out


def test_a_detected_turn_is_written_as_openai_writes_a_vad_turn_and_the_reply_is_opened():
    p = Pair("google")
    p.update({"audio": {"input": {"turn_detection": {"type": "server_vad"}}}})
    c = p.client
    p.append(1.0)
    started = written(c, c.frame(Speech("started")))
    # words transcribed while the user still speaks belong to the item being spoken
    (early,) = written(c, c.frame(Transcript("user", "h", False)))
    p.append(0.5)
    stopped = written(c, c.frame(Speech("stopped")))
    assert kinds(started) == ["input_audio_buffer.speech_started"]
    assert kinds(stopped) == ["input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
                              "conversation.item.added", "conversation.item.done"]
    item_id = started[0]["item_id"]
    assert stopped[0]["item_id"] == stopped[1]["item_id"] == stopped[2]["item"]["id"] == item_id
    assert (started[0]["audio_start_ms"], stopped[0]["audio_end_ms"]) == (1000, 1500)
    reply = written(c, c.audio("a1", b"\0\0" * 10) + c.frame(Usage(1, 2)))
    assert reply[0]["type"] == "response.created" and reply[-1]["type"] == "response.done"
    assert reply[-1]["response"]["status"] == "completed"
    (transcript,) = written(c, c.frame(Transcript("user", "hi", True)))
    assert transcript["item_id"] == early["item_id"] == item_id and transcript["usage"]["seconds"] == 0.5
    # in server mode a response.create does not commit: the detector does
    p.append(0.2)
    assert c.receive_text('{"type":"response.create"}') == [Respond(commit=False)]


def test_speech_over_a_reply_ends_it_cancelled_by_the_turn_detected():
    p = Pair("xai")
    p.update({"audio": {"input": {"turn_detection": {"type": "server_vad"}}}})
    c = p.client
    head = written(c, c.audio("a1", b"\0\0" * 10))
    assert c.cancelled(barge_in=True) == []
    speech = written(c, c.frame(Speech("started")))
    done = written(c, c.frame(Usage(0, 0)))
    assert head[0]["type"] == "response.created" and kinds(speech) == ["input_audio_buffer.speech_started"]
    assert done[-1]["response"]["status"] == "cancelled"
    assert done[-1]["response"]["status_details"]["reason"] == "turn_detected"
    item_done = next(e for e in done if e["type"] == "response.output_item.done")
    assert item_done["item"]["status"] == "incomplete"


# --------------------------------------------------------------------------- properties

_update = st.fixed_dictionaries({}, optional={
    "instructions": st.one_of(st.none(), st.text(max_size=8), st.integers()),
    "voice": st.sampled_from(["alloy", "Kore", "eve", "", None, 3]),
    "tools": st.one_of(st.none(), st.just([{"type": "function", "name": "t1"}]), st.just(5)),
    "tool_choice": st.sampled_from(["auto", "none", "required", None]),
    "audio": st.fixed_dictionaries({}, optional={"input": st.fixed_dictionaries({}, optional={
        "turn_detection": st.one_of(st.none(), st.just({"type": "semantic_vad"}), st.fixed_dictionaries(
            {"type": st.just("server_vad")}, optional={
                "threshold": st.floats(-1, 2), "silence_duration_ms": st.integers(-10, 10**6),
                "prefix_padding_ms": st.integers(-10, 10**6)}))})}),
})
_step = st.one_of(
    _update.map(lambda s: ("update", s)),
    st.just(("append",)), st.just(("commit",)), st.just(("create",)), st.just(("text",)),
    st.just(("started",)), st.just(("stopped",)), st.just(("audio",)), st.just(("usage",)),
    st.just(("barge_in",)),
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["google", "xai"]), st.lists(_step, max_size=20))
def test_any_sequence_of_updates_turns_and_speech_gives_valid_events_and_every_response_closes(provider, steps):
    p = Pair(provider, tools=TOOLS)
    c = p.client
    events: list[dict] = []
    for step in steps:
        kind = step[0]
        if kind == "update":
            events += p.update(step[1])
        elif kind == "append":
            events += p.append(0.05)
        elif kind == "commit":
            events += p.send({"type": "input_audio_buffer.commit"})
        elif kind == "create":
            events += p.send({"type": "response.create"})
        elif kind == "text":
            events += p.send({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}})
        elif kind in ("started", "stopped"):
            events += written(c, c.frame(Speech(kind)))
        elif kind == "audio":
            events += written(c, c.audio("a", b"\0\0"))
        elif kind == "usage":
            events += written(c, c.frame(Usage(0, 0)))
        else:
            c.cancelled(barge_in=True)
    events += written(c, c.frame(Usage(0, 0)))  # the provider ends what it began
    open_response = None
    for e in events:
        if e["type"] == "response.created":
            assert open_response is None
            open_response = e["response"]["id"]
        elif e["type"] == "response.done":
            open_response = None
    assert open_response is None
    # a commit names a new item each time
    committed = [e["item_id"] for e in events if e["type"] == "input_audio_buffer.committed"]
    assert len(committed) == len(set(committed))
    # the provider's session stays one a mint could have asked for (bounds included)
    assert msgspec.convert(msgspec.to_builtins(p.provider.params), SessionParams) == p.provider.params


# --------------------------------------------------------------------------- Gemini: audio during a reply


def gemini_after_commit() -> GoogleCodec:
    """A manual Gemini session whose model is answering a committed turn."""
    c = GoogleCodec(SessionParams(provider="google", model="m"))
    c.start()
    c.audio(b"\1\0" * 160)
    c.commit()
    return c


def realtime_kinds(messages) -> list[str]:
    return [next(iter(json.loads(m).get("realtimeInput", {"other": 1}))) for m in messages]


def test_gemini_audio_during_a_reply_waits_for_its_end_and_then_opens_the_next_turn():
    """A microphone that keeps streaming after a commit (Mastra's) must not cut the reply:
    an activityStart interrupts Gemini."""
    c = gemini_after_commit()
    assert c.audio(b"\0\0" * 160) == [] and c.audio(b"\0\0" * 160) == []
    assert c.drain_outbound() == []
    c.receive(json.dumps({"serverContent": {"turnComplete": True}}))
    assert realtime_kinds(c.drain_outbound()) == ["activityStart", "audio", "audio"]
    assert realtime_kinds(c.audio(b"\0\0")) == ["audio"]  # the activity is open now
    assert realtime_kinds(c.commit()) == ["activityEnd"]


@pytest.mark.parametrize("take_turn, expected", [
    (lambda c: c.commit(), ["activityStart", "audio", "activityEnd"]),
    (lambda c: c.interrupt(0), ["activityStart", "audio"]),
])
def test_gemini_a_commit_or_interrupt_during_the_reply_sends_the_held_audio_at_once(take_turn, expected):
    c = gemini_after_commit()
    c.audio(b"\0\0" * 160)
    assert realtime_kinds(take_turn(c)) == expected


def test_gemini_holds_the_latest_five_seconds_and_counts_what_it_dropped():
    c = gemini_after_commit()
    second = b"\0\0" * 16000
    for _ in range(6):
        c.audio(second)
    c.receive(json.dumps({"serverContent": {"turnComplete": True}}))
    released = c.drain_outbound()
    assert realtime_kinds(released) == ["activityStart"] + ["audio"] * 5
    assert c._held.dropped_bytes == len(second)


def test_gemini_audio_held_when_the_reply_becomes_a_tool_call_is_dropped():
    c = gemini_after_commit()
    c.audio(b"\0\0" * 160)
    c.receive(json.dumps({"toolCall": {"functionCalls": [{"id": "c1", "name": "f", "args": {}}]}}))
    c.tool_result("c1", "{}")
    c.receive(json.dumps({"serverContent": {"turnComplete": True}}))
    assert c.drain_outbound() == []  # realtime input during the call would have ended the session


def test_gemini_a_turn_committed_before_the_connection_opened_still_holds_later_audio():
    """The client may speak and commit before the bridge's upstream socket is open (the
    bridge holds the messages until Ready): the codec's first start must not forget that
    the model now answers, or the microphone's next audio would cut the reply."""
    c = GoogleCodec(SessionParams(provider="google", model="m"))
    c.audio(b"\1\0" * 160)
    c.commit()
    c.start()  # the socket opened only now
    assert c.audio(b"\0\0" * 160) == []
    c.receive(json.dumps({"serverContent": {"turnComplete": True}}))
    assert realtime_kinds(c.drain_outbound()) == ["activityStart", "audio"]


# --------------------------------------------------------------------------- items a client asks for again


def test_retrieve_answers_each_item_as_last_described_and_an_unknown_id_is_invalid():
    """The Agents SDK retrieves the assistant item after each truncation and user transcript;
    an error there would surface as a session error in the SDK."""
    p = Pair("xai")
    c = p.client
    p.append(0.5)
    committed = p.send({"type": "response.create"})
    user_id = committed[0]["item_id"]
    written(c, c.frame(Transcript("user", "hello there", True)))
    reply = written(c, c.audio("a1", b"\0\0" * 10) + c.frame(Transcript("assistant", "Hi!", True)) + c.frame(Usage(1, 1)))
    assistant_id = next(e for e in reply if e["type"] == "response.output_item.added")["item"]["id"]
    (user,) = p.send({"type": "conversation.item.retrieve", "item_id": user_id})
    assert user["type"] == "conversation.item.retrieved"
    assert user["item"]["content"] == [{"type": "input_audio", "transcript": "hello there"}]
    (assistant,) = p.send({"type": "conversation.item.retrieve", "item_id": assistant_id})
    assert assistant["item"]["status"] == "completed"
    assert assistant["item"]["content"] == [{"type": "output_audio", "transcript": "Hi!"}]
    p.send({"type": "conversation.item.truncate", "item_id": assistant_id, "content_index": 0, "audio_end_ms": 0})
    (cut,) = p.send({"type": "conversation.item.retrieve", "item_id": assistant_id})
    assert cut["item"]["content"] == [{"type": "output_audio", "transcript": ""}]  # truncate deletes it
    text = p.send({"type": "conversation.item.create", "item": {
        "id": "item_t", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}})
    (again,) = p.send({"type": "conversation.item.retrieve", "item_id": "item_t"})
    assert again["item"] == text[-1]["item"]
    for bad in ("item_nope", 5, None):
        (err,) = p.send({"type": "conversation.item.retrieve", "event_id": "r1", "item_id": bad})
        assert err["error"]["code"] == "invalid_value" and err["error"]["param"] == "item_id"


def test_retrieve_remembers_a_bounded_number_of_items():
    from speko_bridge.clientproto.openai_events import MAX_REMEMBERED_ITEMS

    p = Pair("xai")
    for i in range(MAX_REMEMBERED_ITEMS + 1):
        p.send({"type": "conversation.item.create", "item": {
            "id": f"item_{i}", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}})
    assert p.send({"type": "conversation.item.retrieve", "item_id": "item_0"})[0]["type"] == "error"
    assert p.send({"type": "conversation.item.retrieve", "item_id": "item_1"})[0]["type"] == "conversation.item.retrieved"


def test_a_transcript_finished_after_the_next_turn_began_stays_with_its_own_item():
    """Gemini may finish transcribing a turn after the user spoke over the reply: its final
    belongs to the item its first words went to, not to the new turn's."""
    p = Pair("google")
    p.update({"audio": {"input": {"turn_detection": {"type": "server_vad"}}}})
    c = p.client
    first = written(c, c.frame(Speech("started")))[0]["item_id"]
    written(c, c.frame(Speech("stopped")))
    (delta,) = written(c, c.frame(Transcript("user", "I ", False)))
    written(c, c.audio("a", b"\0\0"))
    c.cancelled(barge_in=True)
    second = written(c, c.frame(Speech("started")))[0]["item_id"]
    (late,) = written(c, c.frame(Transcript("user", "I spoke", True)))
    (new,) = written(c, c.frame(Transcript("user", "again", False)))
    assert delta["item_id"] == late["item_id"] == first != second == new["item_id"]


def test_xai_a_response_asked_for_in_server_mode_leaves_the_audio_buffer_to_the_detector():
    """A typed message with an open microphone (the Agents SDK's send_message): the few ms of
    silence appended since the last detected turn must not be committed (OpenAI refuses a
    commit under 100 ms, and a commit would cut a user speaking mid-word)."""
    p = Pair("xai")
    p.update({"audio": {"input": {"turn_detection": {"type": "server_vad"}}}})
    p.append(0.02)
    sent = len(p.upstream)
    p.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Quelle heure est-il ?"}]}})
    p.send({"type": "response.create"})
    assert [json.loads(m)["type"] for m in p.upstream[sent:]] == ["conversation.item.create", "response.create"]
