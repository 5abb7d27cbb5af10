"""Mastra's realtime voice (``@mastra/voice-openai-realtime`` from npm), unchanged but for its
``url`` option and the minted token as its ``apiKey``, holding a spoken turn through
``/v1/openai/realtime`` for every provider behind it (tests/node/mastra_voice_turn.mjs).

Two turns, spoken like a live microphone. At its defaults Mastra's ``connect()`` sends one ``session.update``: empty tools, its
transcriber (``whisper-1``) and its voice (``alloy``, an OpenAI voice, whatever the provider),
no turn detection (OpenAI's default, server VAD, stays). ``send()`` streams a microphone;
Mastra prints the user's words from the transcription deltas and de-duplicates the
``completed`` transcript by item id. A user notices an ``error`` event, their words shown
twice, or no answer."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import run_bridge
from .mic import speech
from .test_conformance import provider_env, start_simulator
from .wsclient import mint

ROOT = Path(__file__).resolve().parent.parent
NODE_CLIENT = ROOT / "tests" / "node" / "mastra_voice_turn.mjs"
MASTRA = "@mastra/voice-openai-realtime@0.14.0"
ZOD = "zod@4"  # Mastra's peer dependency
SPOKEN_S = 0.8
TURNS = 2  # the script speaks, waits for the answer, speaks again
HANDS_FREE = {"type": "server", "silenceMs": 500, "prefixMs": 300}  # OpenAI's server_vad defaults
#: The simulators send each 100 ms of a reply this long after the last: about twice real
#: time, as the services stream (the default, 0, sends a reply at once, before any audio the
#: microphone sends meanwhile could reach the provider).
STREAM_INTERVAL_S = 0.05

CASES = [pytest.param(mode, provider, id=f"{mode}-{provider}")
         for mode in ("vad", "answer", "tool") for provider in ("openai", "google", "xai")]


@pytest.fixture(scope="session")
def mastra_dir(tmp_path_factory) -> Path:
    """``npm install`` Mastra's package into one temp dir for the whole run."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed: `make test` installs them with apt")
    directory = tmp_path_factory.getbasetemp() / "node-mastra"
    if not (directory / "node_modules" / "@mastra" / "voice-openai-realtime").is_dir():
        directory.mkdir(exist_ok=True)
        (directory / "package.json").write_text('{"name": "speko-mastra-client", "private": true, "type": "module"}')
        proc = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", MASTRA, ZOD],
                              cwd=directory, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
    shutil.copy(NODE_CLIENT, directory / NODE_CLIENT.name)
    return directory


async def run_mastra(directory: Path, url: str, token: str, mode: str) -> dict:
    pcm = directory / f"speech-{os.getpid()}.pcm"
    pcm.write_bytes(speech(SPOKEN_S))
    proc = await asyncio.create_subprocess_exec(
        "node", NODE_CLIENT.name, url, token, str(pcm), mode, cwd=directory,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NODE_NO_WARNINGS": "1", "OPENAI_API_KEY": ""})
    out, err = await asyncio.wait_for(proc.communicate(), 40)
    assert proc.returncode == 0, (out.decode()[-3000:], err.decode()[-3000:])
    return json.loads(out.decode().strip().splitlines()[-1])


@pytest.mark.parametrize(("mode", "provider"), CASES)
async def test_mastra_voice_hears_each_turn_once_and_answers_it(http, env, mastra_dir, mode, provider):
    sim = await start_simulator(provider, reply_ms=600, delta_interval=STREAM_INTERVAL_S)
    try:
        async with run_bridge(provider_env(env, provider, sim.url)) as bridge:
            # vad: the server ends the turn (OpenAI behind: its own default, server VAD, whatever
            # the mint says). answer: turns left manual at the mint, answer() ends the turn and
            # the bridge commits the audio; OpenAI behind keeps its server VAD, so there the
            # answer() response comes first (no user audio in it: OpenAI's response.create
            # never commits the buffer) and the VAD's turn is answered after it
            extra = {"turnDetection": HANDS_FREE} if mode in ("vad", "tool") else {}
            created = await mint(http, bridge, provider, **extra)
            seen = await run_mastra(mastra_dir, f"ws://127.0.0.1:{bridge.port}/v1/openai/realtime",
                                    created["token"], mode)
    finally:
        await sim.stop()
    trail = json.dumps(seen)
    assert seen["errors"] == [] and "error" not in seen["events"], trail
    # the user's words, once per turn: Mastra shows the deltas, and a completed transcript
    # only for an item whose deltas it did not see
    assert seen["user"].count("I spoke for") == TURNS, trail
    assert seen["events"].count("conversation.item.input_audio_transcription.completed") == TURNS, trail
    # a spoken answer to each turn, with its words
    assert seen["speakingBytes"] >= TURNS * 2 * 24000 * 600 // 1000 * 9 // 10, trail
    # (the simulators answer "You spoke for S seconds.", S the turn's audio: later turns also
    # count the prefix padding or the silence before the speech; OpenAI behind, answer mode:
    # answer() gets its own answer before the VAD's, see above)
    if mode == "tool":  # the simulators call the first tool after user audio, then speak its result
        assert [(t["toolName"], t["args"], t["output"]) for t in seen["tools"]] == \
            [("get_weather", {"city": "Paris"}, {"city": "Paris", "temp_c": 21})] * TURNS, trail
        assert seen["assistant"].count('The tool said: {"city":"Paris","temp_c":21}') == TURNS, trail
    else:
        answers = seen["assistant"].count("You spoke for ")
        assert answers == TURNS or (provider, mode) == ("openai", "answer") and answers == 2 * TURNS, trail
    assert seen["responses"] and set(seen["responses"]) == {"completed"}, trail
    assert sim.violations == []
