"""``/v1/openai/realtime`` with clients nobody here wrote: the official ``openai`` Python SDK
(every provider), and a Node client from npm (``@openai/agents-realtime``), each holding a
turn through the bridge to the providers' simulators with nothing but a minted token where
the OpenAI key would be."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest
from openai import AsyncOpenAI

from .conftest import run_bridge
from .test_conformance import provider_env, start_simulator
from .wsclient import MODELS, WEATHER_TOOL, mint, tone, wait_record

ROOT = Path(__file__).resolve().parent.parent
NODE_CLIENT = ROOT / "tests" / "node" / "agents_realtime_turn.mjs"
AGENTS_REALTIME = "@openai/agents-realtime@0.20.0"


@pytest.fixture(params=["openai", "google", "xai"])
def provider(request) -> str:
    return request.param


@pytest.fixture
async def compat_bridge(env, provider):
    sim = await start_simulator(provider, reply_ms=600)
    try:
        async with run_bridge(provider_env(env, provider, sim.url)) as b:
            yield b, sim
    finally:
        await sim.stop()


async def until(conn, kind: str, seen: list, timeout: float = 10) -> dict:
    async with asyncio.timeout(timeout):
        async for event in conn:
            seen.append(event)
            if event.type == "error":
                raise AssertionError(f"error event: {event.error}")
            if event.type == kind:
                return event
    raise AssertionError(f"socket closed before {kind}")


REPLY_SAMPLES = 600 * 24  # each spoken reply of the simulators: 600 ms at 24 kHz


def reply_audio(seen: list, response_id: str) -> bytes:
    return b"".join(base64.b64decode(e.delta) for e in seen
                    if e.type == "response.output_audio.delta" and e.response_id == response_id)


async def test_openai_python_sdk_holds_a_conversation_with_a_tool_call(http, compat_bridge, provider):
    bridge, sim = compat_bridge
    created = await mint(http, bridge, provider, tools=[WEATHER_TOOL], systemPrompt="Be brief.")
    client = AsyncOpenAI(api_key=created["token"], websocket_base_url=f"ws://127.0.0.1:{bridge.port}/v1/openai")
    seen: list = []
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
        await until(conn, "session.updated", seen)
        await conn.input_audio_buffer.append(audio=base64.b64encode(tone(0.5, 24000)).decode())
        await conn.input_audio_buffer.commit()
        await conn.response.create()
        args = await until(conn, "response.function_call_arguments.done", seen)
        # the simulators call the first tool with its string properties set to "Paris"
        assert args.name == "get_weather" and json.loads(args.arguments) == {"city": "Paris"}
        first = await until(conn, "response.done", seen)
        assert first.response.output[-1].type == "function_call"
        await conn.conversation.item.create(item={"type": "function_call_output", "call_id": args.call_id,
                                                  "output": json.dumps({"temp_c": 21})})
        await conn.response.create()
        done = await until(conn, "response.done", seen)
        # a later turn, after the tool result: answered like the first
        await conn.input_audio_buffer.append(audio=base64.b64encode(tone(0.3, 24000)).decode())
        await conn.input_audio_buffer.commit()
        await conn.response.create()
        later = await until(conn, "response.done", seen)
    # (user audio in a session with tools: the simulators answer with the tool call again)
    assert later.response.id != done.response.id and later.response.status == "completed"
    call = later.response.output[-1]
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}
    seen = seen[:seen.index(done) + 1]  # the tool turn, as the checks below expect it
    kinds = [e.type for e in seen]
    # the reply, in OpenAI's order, with ids that tie deltas to their response and item
    reply = kinds[kinds.index("response.done") + 1:]
    for a, b in [("response.created", "response.output_item.added"),
                 ("response.output_item.added", "response.content_part.added"),
                 ("response.content_part.added", "response.output_audio.delta"),
                 ("response.output_audio.delta", "response.output_audio.done"),
                 ("response.output_audio.done", "response.output_audio_transcript.done"),
                 ("response.output_audio_transcript.done", "response.output_item.done"),
                 ("response.output_item.done", "response.done")]:
        assert reply.index(a) < reply.index(b), (a, b, reply)
    deltas = [e for e in seen if e.type == "response.output_audio.delta"]
    assert {e.response_id for e in deltas} == {done.response.id}
    # all of the simulator's reply, at 24 kHz (within the resampler's delay), nothing more
    assert abs(len(reply_audio(seen, done.response.id)) // 2 - REPLY_SAMPLES) <= 2
    transcript = [e for e in seen if e.type == "response.output_audio_transcript.done"][-1].transcript
    assert "21" in transcript or "temp" in transcript
    assert done.response.usage.output_token_details.audio_tokens > 0
    rec = await wait_record(http, bridge, created["sessionId"], "ended")
    assert rec["closeCode"] == 1000 and rec["usage"]["outputAudioTokens"] > 0
    assert sim.violations == []


async def test_bad_and_used_tokens_get_an_openai_error_and_4001(http, compat_bridge, provider):
    bridge, sim = compat_bridge
    url = f"ws://127.0.0.1:{bridge.port}/v1/openai/realtime?model=gpt-realtime"
    for headers, protocols in [({"Authorization": "Bearer nope"}, ()),
                               ({}, ("realtime", "openai-insecure-api-key.nope")),
                               ({}, ("realtime",))]:
        async with http.ws_connect(url, headers=headers, protocols=protocols) as ws:
            if protocols:
                assert ws.protocol == "realtime"
            msg = await ws.receive_json()
            assert (await ws.receive()).type is aiohttp.WSMsgType.CLOSE
        assert msg["type"] == "error" and msg["error"]["code"] == "invalid_token", msg
        assert ws.close_code == 4001
    created = await mint(http, bridge, provider)
    # the browser form: the token in the subprotocol, next to "realtime"
    async with http.ws_connect(url, protocols=("realtime", "openai-insecure-api-key." + created["token"])) as ws:
        assert ws.protocol == "realtime"
        await ws.send_json({"type": "nonsense"})
        answer = await ws.receive_json()
        while answer["type"] != "error":
            answer = await ws.receive_json()
        assert answer["error"]["code"] == "invalid_value"  # from OpenAI itself on the fast path
    async with http.ws_connect(url, headers={"Authorization": f"Bearer {created['token']}"}) as ws:
        msg = await ws.receive_json()
    assert msg["error"]["code"] == "token_used"
    assert sim.handshakes == 1


@pytest.mark.parametrize("provider", ["google"])
async def test_what_a_provider_cannot_do_is_an_error_event_not_silence(http, compat_bridge, provider):
    bridge, _ = compat_bridge
    created = await mint(http, bridge, provider)
    url = f"ws://127.0.0.1:{bridge.port}/v1/openai/realtime"
    async with http.ws_connect(url, headers={"Authorization": f"Bearer {created['token']}"}) as ws:
        first = await ws.receive_json()
        assert first["type"] == "session.created" and first["session"]["model"] == MODELS[provider]
        asks = [
            {"type": "session.update", "event_id": "e1", "session": {
                "type": "realtime", "output_modalities": ["text"], "instructions": "Talk like a pirate."}},
            {"type": "input_audio_buffer.clear", "event_id": "e2"},
            {"type": "conversation.item.create", "event_id": "e3",
             "item": {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]}},
            {"type": "input_audio_buffer.commit", "event_id": "e4"},
            {"type": "input_audio_buffer.append", "event_id": "e5", "audio": "not base64!"},
            {"type": "response.create", "event_id": "e6", "response": {"instructions": "Shout."}},
        ]
        for ask in asks:
            await ws.send_json(ask)
        errors = {}
        async with asyncio.timeout(5):
            while len(errors) < len(asks):
                msg = await ws.receive_json()
                if msg["type"] == "error":
                    errors[msg["error"]["event_id"]] = msg["error"]
    # what it could take of the update applied; what it could not is named
    assert errors["e1"]["code"] == "unsupported_for_provider"
    assert "session.output_modalities" in errors["e1"]["message"]
    assert "instructions" not in errors["e1"]["message"]
    assert errors["e2"]["code"] == errors["e3"]["code"] == "unsupported_for_provider"
    assert errors["e4"]["code"] == "input_audio_buffer_commit_empty"
    assert errors["e5"]["code"] == "invalid_value" and errors["e5"]["param"] == "audio"
    assert errors["e6"]["code"] == "unsupported_for_provider" and "instructions" in errors["e6"]["message"]


# --------------------------------------------------------------------------- Node


def _node_client_dir(tmp_path_factory) -> Path:
    """``npm install`` the Agents SDK's realtime package into a temp dir (once per run)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed: `make test` installs them with apt")
    directory = tmp_path_factory.getbasetemp() / "node-agents-realtime"
    if not (directory / "node_modules" / "@openai" / "agents-realtime").is_dir():
        directory.mkdir(exist_ok=True)
        (directory / "package.json").write_text('{"name": "speko-node-client", "private": true, "type": "module"}')
        proc = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", AGENTS_REALTIME],
                              cwd=directory, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
    return directory


@pytest.fixture(scope="session")
def node_client(tmp_path_factory) -> Path:
    return _node_client_dir(tmp_path_factory)


@pytest.mark.parametrize("provider", ["openai", "google", "xai"])
async def test_node_agents_realtime_client_sends_audio_and_hears_audio_and_transcripts(
        http, compat_bridge, provider, node_client):
    bridge, _ = compat_bridge
    created = await mint(http, bridge, provider)
    pcm = node_client / f"in-{provider}.pcm"
    pcm.write_bytes(tone(0.5, 24000))
    script = node_client / NODE_CLIENT.name
    shutil.copy(NODE_CLIENT, script)
    proc = await asyncio.create_subprocess_exec(
        "node", str(script), f"ws://127.0.0.1:{bridge.port}/v1/openai/realtime", created["token"], str(pcm),
        cwd=node_client, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NODE_NO_WARNINGS": "1"})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, (out.decode()[-2000:], err.decode()[-2000:])
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["audioBytes"] > 24000, result
    assert result["transcript"].strip(), result
    assert result["responseDone"] == 1 and result["errors"] == [], result


async def _events_until(ws, done, collected: list, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not done(collected):
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"socket ended: {msg.type} {ws.close_code}")
            collected.append(json.loads(msg.data))


async def test_every_event_of_a_tool_call_conversation_validates_against_the_openai_types(
        http, compat_bridge, provider):
    """What openai-agents does with each server event (issue 19, item 14): validate it with a
    pydantic TypeAdapter of ``RealtimeServerEvent`` and drop what fails. Nothing may fail."""
    import pydantic
    from openai.types.realtime import RealtimeServerEvent

    bridge, sim = compat_bridge
    if provider == "google":
        sim.config.reject_turn = 3  # and a turn the model rejects: it too ends with response.done
    created = await mint(http, bridge, provider, tools=[WEATHER_TOOL])
    url = f"ws://127.0.0.1:{bridge.port}/v1/openai/realtime"
    events: list[dict] = []
    dones = lambda n: lambda evs: sum(e["type"] == "response.done" for e in evs) >= n
    async with http.ws_connect(url, headers={"Authorization": f"Bearer {created['token']}"}) as ws:
        await ws.send_json({"type": "session.update", "session": {
            "type": "realtime", "audio": {"input": {"turn_detection": None}}}})
        audio = base64.b64encode(tone(0.5, 24000)).decode()
        await ws.send_json({"type": "input_audio_buffer.append", "audio": audio})
        await ws.send_json({"type": "input_audio_buffer.commit"})
        await ws.send_json({"type": "response.create"})
        await _events_until(ws, dones(1), events)
        (call,) = [e for e in events if e["type"] == "response.function_call_arguments.done"]
        await ws.send_json({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": call["call_id"], "output": '{"temp_c": 21}'}})
        await ws.send_json({"type": "response.create"})
        await _events_until(ws, dones(2), events)
        if provider == "google":  # the rejected third turn
            await ws.send_json({"type": "input_audio_buffer.append", "audio": audio})
            await ws.send_json({"type": "input_audio_buffer.commit"})
            await ws.send_json({"type": "response.create"})
            await _events_until(ws, lambda evs: any(e["type"] == "error" for e in evs) and dones(3)(evs), events)
        await asyncio.sleep(0.3)  # late transcription events, if any
        while True:
            try:
                msg = await ws.receive(timeout=0.2)
            except TimeoutError:
                break
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            events.append(json.loads(msg.data))
    adapter = pydantic.TypeAdapter(RealtimeServerEvent)
    failures = []
    for event in events:
        try:
            adapter.validate_python(event)
        except pydantic.ValidationError as exc:
            failures.append((event["type"], exc.errors()[0]["loc"], exc.errors()[0]["msg"]))
    assert failures == []
    kinds = [e["type"] for e in events]
    # the user's words reach an Agents SDK user: exactly one completed transcript per turn
    completed = [e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed"]
    assert completed and completed[0]["transcript"] == "I spoke for 0.5 seconds."
    # every response that was created is done exactly once
    assert kinds.count("response.created") == kinds.count("response.done") >= 2
    if provider == "google":
        (error,) = [e for e in events if e["type"] == "error"]
        assert "RESPONSE_REJECTED" in error["error"]["message"]
