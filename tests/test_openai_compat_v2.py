"""``/v1/openai/realtime`` with Gemini and xAI behind it, as real OpenAI clients use it (issue
20): through the real bridge and each provider's simulator over real sockets. A client's first
``session.update`` at the Agents SDK's defaults applies (the simulator sees it); hands-free
turns with ``server_vad`` and ``semantic_vad`` are written as OpenAI writes VAD turns; a text
item is answered at ``response.create``; a foreign voice is no error; a ``response.create``
over uncommitted audio commits it once. Every event validates against the ``openai`` types."""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import pydantic
import pytest
from openai.types.realtime import RealtimeServerEvent

from .conftest import run_bridge
from .test_conformance import provider_env, start_simulator
from .test_handsfree import silence
from .wsclient import mint, tone

RATE = 24000
SILENCE_MS = 300
SERVER_EVENT = pydantic.TypeAdapter(RealtimeServerEvent)


@pytest.fixture(params=["google", "xai"])
def provider(request) -> str:
    return request.param


@pytest.fixture
async def compat(env, provider):
    sim = await start_simulator(provider, reply_ms=400)
    try:
        async with run_bridge(provider_env(env, provider, sim.url)) as b:
            yield b, sim
    finally:
        await sim.stop()


class Client:
    """One raw OpenAI-protocol socket: every event kept in order, each validated."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.events: list[dict] = []

    async def send(self, event: dict) -> None:
        await self.ws.send_json(event)

    async def append(self, pcm: bytes, chunk_ms: int = 40) -> None:
        step = RATE * 2 * chunk_ms // 1000
        for i in range(0, len(pcm), step):
            await self.send({"type": "input_audio_buffer.append",
                             "audio": base64.b64encode(pcm[i:i + step]).decode()})

    async def until(self, done, timeout: float = 15) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not done(self.events):
                    msg = await self.ws.receive()
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        raise AssertionError(f"socket ended: {msg.type} {self.ws.close_code}")
                    event = json.loads(msg.data)
                    SERVER_EVENT.validate_python(event)
                    self.events.append(event)
        except TimeoutError:
            raise AssertionError(f"timed out; so far: {self.kinds()}") from None

    async def settle(self, seconds: float = 0.5) -> None:
        """Read what else arrives within ``seconds`` (late events, or ones that must not come)."""
        try:
            await self.until(lambda _: False, timeout=seconds)
        except AssertionError as exc:
            if "timed out" not in str(exc):
                raise

    def kinds(self) -> list[str]:
        return [e["type"] for e in self.events if e["type"] != "response.output_audio.delta"]

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    def count(self, kind: str) -> int:
        return len(self.of(kind))


async def connect(http, bridge, token: str):
    url = f"ws://127.0.0.1:{bridge.port}/v1/openai/realtime"
    return await http.ws_connect(url, headers={"Authorization": f"Bearer {token}"})


def agents_sdk_update(detection: dict | None) -> dict:
    """The first ``session.update`` of the OpenAI Agents SDK at its defaults (openai-agents 0.24)."""
    return {"type": "session.update", "session": {
        "type": "realtime", "model": "gpt-realtime", "output_modalities": ["audio"],
        "instructions": "You are a pirate.",
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather in a city.",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                  "required": ["city"], "additionalProperties": False}}],
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": RATE},
                            "transcription": {"model": "gpt-4o-mini-transcribe"},
                            "turn_detection": detection},
                  "output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": "ash"}}}}


def upstream_config(sim, provider: str) -> dict:
    """What the provider was last told of the session, in common terms."""
    if provider == "google":
        setup = sim.received[-1][0]["setup"]
        detection = setup["realtimeInputConfig"]["automaticActivityDetection"]
        return {"instructions": setup.get("systemInstruction", {}).get("parts", [{}])[0].get("text"),
                "voice": setup["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"],
                "vad": not detection.get("disabled"),
                "tools": [d["name"] for t in setup.get("tools", []) for d in t["functionDeclarations"]]}
    updates = [m["session"] for m in sim.received[-1] if m.get("type") == "session.update"]
    session = updates[-1]
    return {"instructions": session.get("instructions"), "voice": session.get("voice"),
            "vad": session.get("turn_detection") is not None,
            "tools": [t["name"] for t in session.get("tools") or []]}


@pytest.mark.parametrize("detection", [{"type": "server_vad", "silence_duration_ms": SILENCE_MS,
                                        "prefix_padding_ms": 100},
                                       {"type": "semantic_vad", "interrupt_response": True}])
async def test_the_agents_sdk_first_update_applies_and_a_hands_free_turn_is_answered(
        http, compat, provider, detection):
    bridge, sim = compat
    created = await mint(http, bridge, provider, systemPrompt="Minted.")
    async with await connect(http, bridge, created["token"]) as ws:
        c = Client(ws)
        await c.until(lambda evs: evs and evs[0]["type"] == "session.created")
        await c.send(agents_sdk_update(detection))
        await c.send({"type": "session.update", "session": {"type": "realtime", "model": "gpt-realtime",
                                                            "tracing": "auto"}})
        await c.until(lambda evs: sum(e["type"] == "session.updated" for e in evs) == 2)
        # a hands-free turn: speech, then silence; no commit, no response.create
        await c.append(tone(0.6, RATE) + silence(SILENCE_MS / 1000 + 0.4))
        await c.until(lambda evs: any(e["type"] == "response.done" for e in evs))
        # the simulators answer a session with tools by calling the first one: the new tools
        # reached the provider; the tool's output is then answered in speech
        (call,) = c.of("response.function_call_arguments.done")
        assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Paris"}
        await c.send({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": call["call_id"], "output": '{"temp_c": 21}'}})
        await c.send({"type": "response.create"})
        await c.until(lambda evs: sum(e["type"] == "response.done" for e in evs) == 2)
        await c.settle()
    assert c.count("error") == 0, c.of("error")
    updated = c.of("session.updated")[0]["session"]
    assert updated["instructions"] == "You are a pirate."
    assert updated["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert updated["audio"]["output"]["voice"] == {"google": "Puck", "xai": "eve"}[provider]
    assert upstream_config(sim, provider) == {"instructions": "You are a pirate.", "voice": updated["audio"]["output"]["voice"],
                                              "vad": True, "tools": ["get_weather"]}
    kinds = c.kinds()
    turn = [k for k in kinds if k.startswith("input_audio_buffer.") or k in ("response.created", "response.done")]
    assert turn == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                    "input_audio_buffer.committed", "response.created", "response.done",
                    "response.created", "response.done"], kinds
    (started,), (committed,) = c.of("input_audio_buffer.speech_started"), c.of("input_audio_buffer.committed")
    assert started["item_id"] == committed["item_id"] == c.of("conversation.item.added")[0]["item"]["id"]
    (transcript,) = c.of("conversation.item.input_audio_transcription.completed")
    assert transcript["item_id"] == committed["item_id"] and transcript["transcript"]
    # every word of the user's turn names that one item (Mastra de-duplicates by it)
    words = c.of("conversation.item.input_audio_transcription.delta") + [transcript]
    assert {e["item_id"] for e in words} == {committed["item_id"]}
    done = c.of("response.done")[-1]["response"]
    assert done["status"] == "completed" and c.count("response.output_audio.delta") > 0
    assert sim.violations == []


async def test_a_text_item_is_answered_once_at_response_create(http, compat, provider):
    bridge, sim = compat
    created = await mint(http, bridge, provider)
    async with await connect(http, bridge, created["token"]) as ws:
        c = Client(ws)
        await c.send({"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}})
        await c.send({"type": "conversation.item.create", "item": {
            "id": "item_typed", "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "What is the weather in Paris?"}]}})
        await c.until(lambda evs: any(e["type"] == "conversation.item.done" for e in evs))
        await c.send({"type": "response.create"})
        await c.until(lambda evs: any(e["type"] == "response.done" for e in evs))
        await c.settle()
    assert c.count("error") == 0, c.of("error")
    (added,) = c.of("conversation.item.added")[:1]
    assert added["item"]["id"] == "item_typed" and added["item"]["content"][0]["text"] == "What is the weather in Paris?"
    # the item alone asked for nothing: one response, the one response.create asked for
    assert c.count("response.created") == c.count("response.done") == 1 and sim.replies == 1
    assert c.count("input_audio_buffer.committed") == 0
    transcript = c.of("response.output_audio_transcript.done")[0]["transcript"]
    assert "Paris" in transcript
    assert sim.violations == []


async def test_a_foreign_voice_keeps_the_session_voice_without_an_error(http, compat, provider):
    bridge, sim = compat
    voice = {"google": "Kore", "xai": "rex"}[provider]
    created = await mint(http, bridge, provider, voice=voice)
    async with await connect(http, bridge, created["token"]) as ws:
        c = Client(ws)
        await c.send({"type": "session.update", "session": {"type": "realtime",
                                                            "audio": {"output": {"voice": "alloy"}}}})
        await c.until(lambda evs: any(e["type"] == "session.updated" for e in evs))
        await c.append(tone(0.3, RATE))
        await c.send({"type": "input_audio_buffer.commit"})
        await c.send({"type": "response.create"})
        await c.until(lambda evs: any(e["type"] == "response.done" for e in evs))
    assert c.count("error") == 0, c.of("error")
    assert c.of("session.updated")[0]["session"]["audio"]["output"]["voice"] == voice
    assert upstream_config(sim, provider)["voice"] == voice
    assert sim.violations == []


async def test_response_create_over_uncommitted_audio_commits_once_and_transcribes_once(http, compat, provider):
    """What Mastra does: append, then response.create with no commit. The client must hear
    ``committed`` with the item id its transcript will carry, exactly once."""
    bridge, sim = compat
    created = await mint(http, bridge, provider)
    async with await connect(http, bridge, created["token"]) as ws:
        c = Client(ws)
        await c.send({"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}})
        await c.append(tone(0.5, RATE))
        await c.send({"type": "response.create"})
        await c.until(lambda evs: any(e["type"] == "response.done" for e in evs)
                      and any(e["type"] == "conversation.item.input_audio_transcription.completed" for e in evs))
        await c.settle()
    assert c.count("error") == 0, c.of("error")
    (committed,) = c.of("input_audio_buffer.committed")
    (transcript,) = c.of("conversation.item.input_audio_transcription.completed")
    assert transcript["item_id"] == committed["item_id"]
    assert transcript["transcript"] == "I spoke for 0.5 seconds."
    assert c.count("response.done") == 1 and sim.replies == 1


async def test_after_the_first_turn_gemini_refuses_a_change_by_name_and_xai_takes_it(http, compat, provider):
    bridge, sim = compat
    created = await mint(http, bridge, provider, systemPrompt="Minted.")
    async with await connect(http, bridge, created["token"]) as ws:
        c = Client(ws)
        await c.append(tone(0.3, RATE))
        await c.send({"type": "input_audio_buffer.commit"})
        await c.send({"type": "response.create"})
        await c.until(lambda evs: any(e["type"] == "response.done" for e in evs))
        await c.send({"type": "session.update", "event_id": "late", "session": {"instructions": "Changed."}})
        await c.until(lambda evs: any(e["type"] == "session.updated" for e in evs))
    updated = c.of("session.updated")[0]["session"]
    if provider == "google":
        (error,) = c.of("error")
        assert error["error"]["code"] == "unsupported_for_provider"
        assert error["error"]["param"] == "session.instructions"
        assert updated["instructions"] == "Minted." and len(sim.received) == 1  # no new connection
    else:
        assert c.count("error") == 0 and updated["instructions"] == "Changed."
        assert upstream_config(sim, provider)["instructions"] == "Changed."
    assert sim.violations == []


async def test_speech_over_a_reply_cancels_it_as_openai_does_and_the_next_turn_is_answered(env, http, provider):
    sim = await start_simulator(provider, reply_ms=4000)  # a reply long enough to speak over
    try:
        async with run_bridge(provider_env(env, provider, sim.url)) as bridge:
            created = await mint(http, bridge, provider)
            async with await connect(http, bridge, created["token"]) as ws:
                c = Client(ws)
                await c.send({"type": "session.update", "session": {"audio": {"input": {"turn_detection": {
                    "type": "server_vad", "silence_duration_ms": SILENCE_MS, "prefix_padding_ms": 100}}}}})
                await c.append(tone(0.5, RATE) + silence(SILENCE_MS / 1000 + 0.4))
                await c.until(lambda evs: any(e["type"] == "response.output_audio.delta" for e in evs))
                await c.append(tone(0.6, RATE) + silence(SILENCE_MS / 1000 + 0.4))
                await c.until(lambda evs: sum(e["type"] == "response.done" for e in evs) == 2, timeout=20)
    finally:
        await sim.stop()
    assert c.count("error") == 0, c.of("error")
    first, second = c.of("response.done")
    assert first["response"]["status"] == "cancelled"
    assert first["response"]["status_details"]["reason"] == "turn_detected"
    assert first["response"]["output"][0]["status"] == "incomplete"
    assert second["response"]["status"] == "completed"
    # no audio of the cut reply after the user was heard over it
    barge = [i for i, e in enumerate(c.events) if e["type"] == "input_audio_buffer.speech_started"][1]
    assert not [e for e in c.events[barge:] if e["type"] == "response.output_audio.delta"
                and e["response_id"] == first["response"]["id"]]
    assert c.count("input_audio_buffer.committed") == 2 and sim.violations == []


async def test_a_microphone_that_keeps_streaming_after_response_create_does_not_cut_the_reply(env, http, provider):
    """Mastra's ``answer()`` in manual turns: append, ``response.create``, and the microphone
    keeps sending (silence) while the reply plays. The whole reply arrives, completed."""
    reply_ms = 600
    sim = await start_simulator(provider, reply_ms=reply_ms, delta_interval=0.05)  # streamed, not at once
    try:
        async with run_bridge(provider_env(env, provider, sim.url)) as bridge:
            created = await mint(http, bridge, provider)
            async with await connect(http, bridge, created["token"]) as ws:
                c = Client(ws)
                await c.append(tone(0.5, RATE))
                await c.send({"type": "response.create"})

                async def microphone() -> None:
                    while True:
                        await c.append(silence(0.04))
                        await asyncio.sleep(0.04)

                mic = asyncio.create_task(microphone())
                try:
                    await c.until(lambda evs: any(e["type"] == "response.done" for e in evs))
                finally:
                    mic.cancel()
    finally:
        await sim.stop()
    assert c.count("error") == 0, c.of("error")
    (done,) = c.of("response.done")
    assert done["response"]["status"] == "completed"
    audio = b"".join(base64.b64decode(e["delta"]) for e in c.of("response.output_audio.delta"))
    assert abs(len(audio) // 2 - reply_ms * RATE // 1000) <= 2, (c.kinds(), [m for m in sim.received[-1] if "audio" not in m.get("realtimeInput", {})])
    assert c.of("response.output_audio_transcript.done")[0]["transcript"] == "You spoke for 0.5 seconds."


@pytest.mark.parametrize("provider", ["google"])
async def test_a_reply_gemini_cuts_for_a_new_manual_turn_ends_cancelled(env, http, provider):
    """Manual turns: the user commits a new turn while the reply plays; Gemini cuts the reply
    itself (an activityStart interrupts it), and the client hears it ended as OpenAI ends a
    reply cut by the user: cancelled, ``turn_detected``, its item incomplete."""
    sim = await start_simulator(provider, reply_ms=4000, delta_interval=0.1)
    try:
        async with run_bridge(provider_env(env, provider, sim.url)) as bridge:
            created = await mint(http, bridge, provider)
            async with await connect(http, bridge, created["token"]) as ws:
                c = Client(ws)
                await c.append(tone(0.3, RATE))
                await c.send({"type": "response.create"})
                await c.until(lambda evs: any(e["type"] == "response.output_audio.delta" for e in evs))
                await c.append(tone(0.3, RATE))
                await c.send({"type": "response.create"})
                await c.until(lambda evs: sum(e["type"] == "response.done" for e in evs) == 2, timeout=20)
    finally:
        await sim.stop()
    assert c.count("error") == 0, c.of("error")
    first, second = c.of("response.done")
    assert first["response"]["status"] == "cancelled"
    assert first["response"]["status_details"]["reason"] == "turn_detected"
    assert first["response"]["output"][0]["status"] == "incomplete"
    assert second["response"]["status"] == "completed"


async def test_tools_of_a_single_session_update_are_called_through_to_the_client(http, compat, provider):
    """Mastra declares its tools in its one session.update (none at mint): the provider's call
    must reach the client, not be refused by the bridge as undeclared."""
    bridge, _ = compat
    created = await mint(http, bridge, provider)
    async with await connect(http, bridge, created["token"]) as ws:
        c = Client(ws)
        update = agents_sdk_update(None)
        await c.send(update)
        await c.until(lambda evs: any(e["type"] == "session.updated" for e in evs))
        await c.append(tone(0.3, RATE))
        await c.send({"type": "response.create"})
        await c.until(lambda evs: any(e["type"] == "response.done" for e in evs))
    assert c.count("error") == 0, c.of("error")
    (call,) = c.of("response.function_call_arguments.done")
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Paris"}


async def test_a_typed_message_with_an_open_microphone_in_server_mode_is_answered(http, compat, provider):
    """The Agents SDK's send_message while the microphone streams silence: the item and the
    response.create are answered; nothing commits the detector's few ms of audio."""
    bridge, sim = compat
    created = await mint(http, bridge, provider)
    async with await connect(http, bridge, created["token"]) as ws:
        c = Client(ws)
        await c.send({"type": "session.update", "session": {"audio": {"input": {"turn_detection": {
            "type": "semantic_vad"}}}}})
        await c.until(lambda evs: any(e["type"] == "session.updated" for e in evs))
        await c.append(silence(0.02), chunk_ms=20)
        await c.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Quelle heure est-il ?"}]}})
        await c.send({"type": "response.create"})
        await c.append(silence(0.02), chunk_ms=20)
        await c.until(lambda evs: any(e["type"] == "response.done" for e in evs))
    assert c.count("error") == 0, c.of("error")
    assert c.of("response.done")[0]["response"]["status"] == "completed"
    assert "Quelle heure" in c.of("response.output_audio_transcript.done")[0]["transcript"]
    assert sim.violations == []


@pytest.mark.parametrize("minted,expected", [
    (None, None),  # a manual mint: OpenAI's own default (server VAD) stays
    ({"type": "server", "silenceMs": SILENCE_MS, "prefixMs": 100},
     {"type": "server_vad", "silence_duration_ms": SILENCE_MS, "prefix_padding_ms": 100}),
])
async def test_openai_behind_it_keeps_the_minted_turn_detection_and_otherwise_its_default(
        env, http, minted, expected):
    sim = await start_simulator("openai")
    try:
        async with run_bridge(provider_env(env, "openai", sim.url)) as bridge:
            created = await mint(http, bridge, "openai", **({"turnDetection": minted} if minted else {}))
            async with await connect(http, bridge, created["token"]) as ws:
                c = Client(ws)
                await c.until(lambda events: any(e["type"] == "session.updated" for e in events))
    finally:
        await sim.stop()
    first = next(m for m in sim.received[-1] if m.get("type") == "session.update")
    audio_in = first["session"].get("audio", {}).get("input", {})
    if expected is None:
        assert "turn_detection" not in audio_in, first
    else:
        sent = audio_in["turn_detection"]
        assert {k: sent[k] for k in expected} == expected, sent
    updated = c.of("session.updated")[0]["session"]["audio"]["input"]["turn_detection"]
    assert updated is not None and updated["type"] == "server_vad", updated  # what OpenAI runs
