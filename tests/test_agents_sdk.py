"""The OpenAI Agents SDK (``openai-agents``), unchanged and at its defaults, holding a voice
conversation with a tool call through ``/v1/openai/realtime``, for every provider behind it.

This is what a new user does: a ``RealtimeAgent`` with one function tool, a
``RealtimeRunner``, and ``model_config={"url": <bridge>, "api_key": <minted token>}``. The SDK
then sends its own first ``session.update`` (its default model settings: the agent's
instructions and tools, voice ``ash``, ``semantic_vad`` turn detection with
``interrupt_response``, ``gpt-4o-mini-transcribe`` transcription) and streams the microphone;
the server's VAD ends the turn, the model calls the tool, the SDK runs it and sends the result
with ``response.create``, and the spoken answer arrives. The user notices any ``error`` event
(the SDK also turns every server event that fails its pydantic validation into one).

Also: speaking over the answer (barge-in), a typed message with the microphone open, and the
same tool conversation with the JavaScript SDK (``@openai/agents-realtime`` from npm,
tests/node/agents_realtime_session.mjs)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from agents import function_tool
from agents.realtime import RealtimeAgent, RealtimeRunner

from .conftest import run_bridge
from .mic import Microphone, live, speech
from .test_conformance import provider_env, start_simulator
from .wsclient import mint, wait_record

SPOKEN_S = 0.8  # what the user says; the simulators transcribe "I spoke for 0.X seconds."
REPLY_MS = 600
LONG_REPLY_MS = 4000  # an answer the user talks over
#: A whole conversation: ~0.8 s of speech, up to 1.2 s of semantic-VAD silence, the tool
#: call, a 0.6 s spoken reply; generous on a loaded 2-core machine.
CONVERSATION_S = 20
#: The simulators send each 100 ms of a reply this long after the last: about twice real
#: time, as the services stream (the default, 0, sends a reply at once, before any audio the
#: microphone sends meanwhile could reach the provider).
STREAM_INTERVAL_S = 0.05


@function_tool
def get_weather(city: str) -> str:
    """Get the weather for a city."""
    return json.dumps({"city": city, "temp_c": 21})


def weather_agent() -> RealtimeAgent:
    return RealtimeAgent(name="Assistant", instructions="You are a helpful voice assistant. Be brief.",
                         tools=[get_weather])


@pytest.fixture(params=["openai", "google", "xai"])
def provider(request) -> str:
    return request.param


@pytest.fixture
async def sdk_bridge(env, provider):
    sim = await start_simulator(provider, reply_ms=REPLY_MS, delta_interval=STREAM_INTERVAL_S)
    try:
        async with run_bridge(provider_env(env, provider, sim.url)) as b:
            yield b, sim
    finally:
        await sim.stop()


def _raw(event) -> dict | None:
    """The server event under a ``raw_model_event`` (the SDK's ``raw_server_event``), if any."""
    if event.type != "raw_model_event" or getattr(event.data, "type", None) != "raw_server_event":
        return None
    return event.data.data


async def test_agents_sdk_at_its_defaults_calls_a_tool_and_speaks_the_answer(http, sdk_bridge, provider):
    bridge, sim = sdk_bridge
    # the mint names only the provider and model: the SDK's session.update brings the rest
    created = await mint(http, bridge, provider)
    runner = RealtimeRunner(weather_agent())
    session = await runner.run(model_config={
        "url": f"ws://127.0.0.1:{bridge.port}/v1/openai/realtime", "api_key": created["token"]})
    events: list = []
    errors: list = []
    async with session:
        mic = asyncio.create_task(live(session.send_audio, speech(SPOKEN_S)))
        try:
            async with asyncio.timeout(CONVERSATION_S):
                async for event in session:
                    events.append(event)
                    raw = _raw(event)
                    if event.type == "error" or (raw is not None and raw.get("type") == "error"):
                        errors.append(raw if raw is not None else repr(event.error))
                        break  # what follows an error tells nothing more; the trail shows it
                    # the response after the tool ran (the spoken answer) is done
                    if raw is not None and raw.get("type") == "response.done" \
                            and any(e.type == "tool_end" for e in events):
                        break
        except TimeoutError:
            pass
        finally:
            mic.cancel()
            await asyncio.gather(mic, return_exceptions=True)
    server = [r for r in map(_raw, events) if r is not None]
    kinds = [e["type"] for e in server]
    sdk_kinds = [e.type for e in events if e.type != "raw_model_event"]
    trail = f"SDK events {sdk_kinds}; server events {kinds}; errors {errors}"
    assert errors == [], trail
    # the SDK ran the tool the model called, with the arguments the model gave
    starts = [e for e in events if e.type == "tool_start"]
    ends = [e for e in events if e.type == "tool_end"]
    assert len(starts) == len(ends) == 1, trail
    assert starts[0].tool.name == "get_weather" and json.loads(starts[0].arguments) == {"city": "Paris"}, trail
    assert json.loads(ends[0].output) == {"city": "Paris", "temp_c": 21}
    # the user's turn was ended by the server's VAD and transcribed once
    assert kinds.count("input_audio_buffer.speech_started") == 1, trail
    assert kinds.count("input_audio_buffer.committed") == 1, trail
    heard = [e["transcript"] for e in server
             if e["type"] == "conversation.item.input_audio_transcription.completed"]
    assert len(heard) == 1 and heard[0].startswith("I spoke for "), trail
    # then a spoken answer that carries the tool's result
    after_tool = events[events.index(ends[0]):]
    audio = b"".join(e.audio.data for e in after_tool if e.type == "audio")
    assert len(audio) >= 2 * 24000 * REPLY_MS // 1000 * 9 // 10, trail
    assert [e.type for e in after_tool].count("audio_end") == 1, trail
    spoken = [e["transcript"] for e in server if e["type"] == "response.output_audio_transcript.done"]
    assert spoken and "21" in spoken[-1], trail
    # two responses (the tool call, the answer), each done once, completed
    done = [e["response"] for e in server if e["type"] == "response.done"]
    assert kinds.count("response.created") == len(done) == 2, trail
    assert [r["status"] for r in done] == ["completed", "completed"], trail
    rec = await wait_record(http, bridge, created["sessionId"], "ended")
    assert rec["closeCode"] == 1000
    assert sim.violations == []


async def test_agents_sdk_barge_in_cuts_the_answer_and_the_next_turn_is_answered(http, sdk_bridge, provider):
    """The user speaks over the spoken answer: with the SDK's default ``interrupt_response`` the
    answer stops (the SDK's ``audio_interrupted``, ``response.done`` ``cancelled``), nothing of
    it plays on, and what the user said instead is answered."""
    bridge, sim = sdk_bridge
    sim.config.reply_ms = LONG_REPLY_MS  # still streaming when the user speaks again
    created = await mint(http, bridge, provider)
    runner = RealtimeRunner(RealtimeAgent(name="Assistant", instructions="Be brief."))
    session = await runner.run(model_config={
        "url": f"ws://127.0.0.1:{bridge.port}/v1/openai/realtime", "api_key": created["token"]})
    events: list = []
    errors: list = []
    async with session:
        mic = Microphone(session.send_audio)
        mic.say(speech(SPOKEN_S))
        running = asyncio.create_task(mic.run())
        spoke_again = False
        try:
            async with asyncio.timeout(CONVERSATION_S):
                async for event in session:
                    events.append(event)
                    raw = _raw(event)
                    if event.type == "error" or (raw is not None and raw.get("type") == "error"):
                        errors.append(raw if raw is not None else repr(event.error))
                        break
                    if event.type == "audio" and not spoke_again:  # the answer plays: talk over it
                        spoke_again = True
                        sim.config.reply_ms = REPLY_MS
                        mic.say(speech(SPOKEN_S))
                    if raw is not None and raw.get("type") == "response.done" \
                            and raw["response"]["status"] == "completed" and spoke_again:
                        break
        except TimeoutError:
            pass
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    server = [r for r in map(_raw, events) if r is not None]
    kinds = [e["type"] for e in server]
    trail = f"SDK events {[e.type for e in events if e.type != 'raw_model_event']}; server events {kinds}; errors {errors}"
    assert errors == [], trail
    done = [e["response"] for e in server if e["type"] == "response.done"]
    assert [r["status"] for r in done] == ["cancelled", "completed"], trail
    assert done[0]["status_details"]["reason"] == "turn_detected", trail
    # the SDK stopped the answer, and none of it came after
    (cut,) = [e for e in events if e.type == "audio_interrupted"] or [None]
    assert cut is not None, trail
    first_item = next(e.item_id for e in events if e.type == "audio")
    after = events[events.index(cut):]
    assert not [e for e in after if e.type == "audio" and e.item_id == first_item], trail
    heard_first = sum(len(e.audio.data) for e in events if e.type == "audio" and e.item_id == first_item)
    assert heard_first < 2 * 24000 * LONG_REPLY_MS // 1000, "the first answer played on"
    # two user turns, each heard and transcribed once; the second one answered in full
    assert kinds.count("input_audio_buffer.speech_started") == 2, trail
    committed = [e["item_id"] for e in server if e["type"] == "input_audio_buffer.committed"]
    heard = [e["item_id"] for e in server if e["type"] == "conversation.item.input_audio_transcription.completed"]
    assert len(committed) == 2 and heard == committed, trail
    second = b"".join(e.audio.data for e in after if e.type == "audio")
    assert len(second) >= 2 * 24000 * REPLY_MS // 1000 * 9 // 10, trail
    assert sim.violations == []


# --------------------------------------------------------------------------- JavaScript

NODE_SESSION = Path(__file__).resolve().parent / "node" / "agents_realtime_session.mjs"
AGENTS_REALTIME_JS = ("@openai/agents-realtime@0.20.0", "zod@4")  # zod: how its tools declare parameters


@pytest.fixture(scope="session")
def agents_js_dir(tmp_path_factory) -> Path:
    """``npm install`` the JavaScript Agents SDK's realtime package into one temp dir per run."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed: `make test` installs them with apt")
    directory = tmp_path_factory.getbasetemp() / "node-agents-session"
    if not (directory / "node_modules" / "@openai" / "agents-realtime").is_dir():
        directory.mkdir(exist_ok=True)
        (directory / "package.json").write_text('{"name": "speko-agents-session", "private": true, "type": "module"}')
        proc = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", *AGENTS_REALTIME_JS],
                              cwd=directory, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
    shutil.copy(NODE_SESSION, directory / NODE_SESSION.name)
    return directory


async def test_js_agents_sdk_at_its_defaults_calls_a_tool_and_speaks_the_answer(http, sdk_bridge, provider,
                                                                               agents_js_dir):
    """The same conversation with ``@openai/agents-realtime``: ``RealtimeAgent`` + a ``tool`` in a
    ``RealtimeSession`` over WebSocket, ``connect({apiKey: token, url})``, a live microphone."""
    bridge, sim = sdk_bridge
    created = await mint(http, bridge, provider)
    pcm = agents_js_dir / f"speech-{provider}.pcm"
    pcm.write_bytes(speech(SPOKEN_S))
    proc = await asyncio.create_subprocess_exec(
        "node", NODE_SESSION.name, f"ws://127.0.0.1:{bridge.port}/v1/openai/realtime", created["token"], str(pcm),
        cwd=agents_js_dir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NODE_NO_WARNINGS": "1", "OPENAI_API_KEY": ""})
    out, err = await asyncio.wait_for(proc.communicate(), 40)
    assert proc.returncode == 0, (out.decode()[-3000:], err.decode()[-3000:])
    seen = json.loads(out.decode().strip().splitlines()[-1])
    trail = json.dumps(seen)
    assert seen["errors"] == [], trail
    assert seen["tools"][0]["name"] == "get_weather" and json.loads(seen["tools"][0]["args"]) == {"city": "Paris"}, trail
    assert json.loads(seen["tools"][1]["output"]) == {"city": "Paris", "temp_c": 21}, trail
    assert len(seen["transcripts"]) == 1 and seen["transcripts"][0].startswith("I spoke for "), trail
    assert seen["events"].count("input_audio_buffer.committed") == 1, trail
    assert seen["audioAfterTool"] >= 2 * 24000 * REPLY_MS // 1000 * 9 // 10, trail
    assert seen["events"].count("response.created") == seen["events"].count("response.done") == 2, trail
    assert sim.violations == []


async def test_agents_sdk_typed_message_is_answered_aloud(http, sdk_bridge, provider):
    """``session.send_message(text)``: the SDK adds a user ``input_text`` item and asks for a
    response; the answer is spoken, while the open microphone keeps sending silence."""
    bridge, sim = sdk_bridge
    created = await mint(http, bridge, provider)
    runner = RealtimeRunner(RealtimeAgent(name="Assistant", instructions="Be brief."))
    session = await runner.run(model_config={
        "url": f"ws://127.0.0.1:{bridge.port}/v1/openai/realtime", "api_key": created["token"]})
    events: list = []
    async with session:
        running = asyncio.create_task(Microphone(session.send_audio).run())
        try:
            await session.send_message("Quelle heure est-il ?")
            async with asyncio.timeout(CONVERSATION_S):
                async for event in session:
                    events.append(event)
                    raw = _raw(event)
                    if event.type == "error" or (raw is not None and raw["type"] in ("error", "response.done")):
                        break
        except TimeoutError:
            pass
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    server = [r for r in map(_raw, events) if r is not None]
    kinds = [e["type"] for e in server]
    trail = f"SDK events {[e.type for e in events if e.type != 'raw_model_event']}; server events {kinds}; errors {[e for e in server if e['type'] == 'error']}"
    assert "error" not in kinds and not [e for e in events if e.type == "error"], trail
    # the user's item, as the SDK sent it, then one spoken answer to it
    added = [e["item"] for e in server if e["type"] == "conversation.item.added" and e["item"].get("role") == "user"]
    assert [c.get("text") for c in added[0]["content"]] == ["Quelle heure est-il ?"], trail
    assert server[-1]["type"] == "response.done" and server[-1]["response"]["status"] == "completed", trail
    spoken = [e["transcript"] for e in server if e["type"] == "response.output_audio_transcript.done"]
    assert spoken == ["You wrote: Quelle heure est-il ?"], trail
    audio = b"".join(e.audio.data for e in events if e.type == "audio")
    assert len(audio) >= 2 * 24000 * REPLY_MS // 1000 * 9 // 10, trail
    assert kinds.count("input_audio_buffer.speech_started") == 0, trail  # nobody spoke
    assert sim.violations == []
