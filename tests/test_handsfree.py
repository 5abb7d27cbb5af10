"""Hands-free conversations (``turnDetection`` ``server``, protocol v2), per provider, through
the real bridge and each provider's simulator over real sockets: turns end by themselves
when the user falls silent (no ``commit``), ``speech`` frames frame each user turn, and
speaking over a reply cuts it at the audio delivered, with none of it after ``speech:
started`` (barge-in), then the next turn is answered."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from .conftest import run_bridge
from .test_conformance import SIMULATORS, provider_env, start_simulator
from .wsclient import mint, tone

RATE = 24000
SILENCE_MS = 300
SERVER_TURNS = {"type": "server", "silenceMs": SILENCE_MS, "prefixMs": 100}


def silence(seconds: float, rate: int = RATE) -> bytes:
    return bytes(2 * int(seconds * rate))


def utterance(seconds: float) -> bytes:
    """Speech (a tone loud enough for any VAD), then enough silence to end the turn."""
    return tone(seconds, RATE) + silence(SILENCE_MS / 1000 + 0.2)


class Timeline:
    """Every message in arrival order: ("audio", bytes) or ("frame", dict)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def frames(self, kind: str | None = None) -> list[dict]:
        return [f for k, f in self.events if k == "frame" and (kind is None or f["type"] == kind)]

    def count(self, kind: str, **match) -> int:
        return sum(all(f.get(k) == v for k, v in match.items()) for f in self.frames(kind))

    def kinds(self) -> list[str]:
        """Frame kinds in order, audio runs collapsed to one "audio"."""
        out: list[str] = []
        for k, f in self.events:
            name = "audio" if k == "audio" else (
                f"speech.{f['state']}" if f["type"] == "speech" else f["type"])
            if k == "frame" and f["type"] == "transcript":
                continue
            if not out or out[-1] != name or name != "audio":
                out.append(name)
        return out

    async def read(self, ws, until, timeout: float = 15.0) -> None:
        try:
            await self._read(ws, until, timeout)
        except TimeoutError:
            raise AssertionError(f"timed out; so far: {self.kinds()} {self.frames()[-4:]}") from None

    async def _read(self, ws, until, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not until(self):
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.BINARY:
                    self.events.append(("audio", msg.data))
                elif msg.type is aiohttp.WSMsgType.TEXT:
                    self.events.append(("frame", json.loads(msg.data)))
                else:
                    raise AssertionError(f"socket ended: {msg.type} {self.frames()[-3:]}")


@pytest.fixture(params=sorted(SIMULATORS))
def provider(request) -> str:
    return request.param


@pytest.fixture
async def sim(provider):
    simulator = await start_simulator(provider, reply_ms=500)
    yield simulator
    await simulator.stop()


@pytest.fixture
async def bridge(env, provider, sim):
    async with run_bridge(provider_env(env, provider, sim.url)) as server:
        yield server


async def test_three_hands_free_turns_with_no_commit(http, bridge, sim, provider):
    created = await mint(http, bridge, provider, turnDetection=SERVER_TURNS)
    assert created["turnDetection"] == SERVER_TURNS
    got = Timeline()
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        for turn in (1, 2, 3):
            await ws.send_bytes(utterance(0.6))
            await got.read(ws, lambda t: t.count("usage") == turn)
    assert got.kinds() == ["speech.started", "speech.stopped", "audio", "usage"] * 3, got.kinds()
    finals = [f["text"] for f in got.frames("transcript") if f["role"] == "user" and f["final"]]
    assert len(finals) == 3 and all(t.startswith("I spoke for 0.") for t in finals), finals
    assert got.frames("error") == []
    assert sim.violations == []
    sent = [m for log in sim.received for m in log]
    assert not any(m.get("type") in ("input_audio_buffer.commit", "response.create") for m in sent)
    assert not any("activityStart" in (m.get("realtimeInput") or {}) for m in sent)


async def test_barge_in_cuts_the_reply_at_the_audio_delivered(http, bridge, sim, provider):
    sim.config.reply_ms = 4000
    sim.config.delta_interval = 0.03  # the reply streams for a while: in flight when we speak
    created = await mint(http, bridge, provider, turnDetection=SERVER_TURNS)
    got = Timeline()
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        await ws.send_bytes(utterance(0.6))
        await got.read(ws, lambda t: sum(len(a) for k, a in t.events if k == "audio") >= RATE * 2 * 0.4)
        sim.config.reply_ms = 500
        await ws.send_bytes(utterance(0.6))
        await got.read(ws, lambda t: t.count("usage") == 2 and t.count("speech", state="stopped") == 2)
    kinds = got.kinds()
    second = [i for i, (k, f) in enumerate(got.events) if k == "frame" and f == {"type": "speech", "state": "started"}][1]
    stopped = [i for i, (k, f) in enumerate(got.events) if k == "frame" and f == {"type": "speech", "state": "stopped"}][1]
    # no audio between the barge-in and the end of the user's new turn: none of the old reply
    assert not [k for k, _ in got.events[second:stopped] if k == "audio"], kinds
    # the interrupted reply ended with exactly one usage, before the new turn's reply (before
    # or after the new turn's end: xAI's reply ends when the bridge's cancel reaches it)
    assert kinds[:4] == ["speech.started", "speech.stopped", "audio", "speech.started"], kinds
    assert sorted(kinds[4:6]) == ["speech.stopped", "usage"] and kinds[6:] == ["audio", "usage"], kinds
    heard = sum(len(a) for k, a in got.events[:second] if k == "audio")
    assert heard < RATE * 2 * 3, "the old reply played on"
    new_reply = sum(len(a) for k, a in got.events[stopped:] if k == "audio")
    assert abs(new_reply // 2 - RATE * 500 // 1000) <= 2, "the next turn is answered in full"
    assert got.frames("error") == []
    assert sim.violations == []
    sent = [m for log in sim.received for m in log]
    if provider in ("openai", "xai"):
        truncates = [m for m in sent if m.get("type") == "conversation.item.truncate"]
        assert len(truncates) == 1
        assert abs(truncates[0]["audio_end_ms"] - heard * 1000 // (2 * RATE)) <= 1, (truncates, heard)
    if provider == "xai":  # xAI's VAD does not cut the reply itself: the bridge's cancel did
        assert [m["type"] for m in sent if m.get("type") == "response.cancel"] == ["response.cancel"]


@pytest.mark.parametrize("turns", [None, SERVER_TURNS], ids=["manual", "server"])
async def test_a_typed_turn_is_echoed_and_answered_in_each_mode(http, bridge, sim, provider, turns):
    extra = {"turnDetection": turns} if turns else {}
    created = await mint(http, bridge, provider, **extra)
    got = Timeline()
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        await ws.send_str(json.dumps({"type": "text", "text": "Bonjour, ça va ?"}))
        await got.read(ws, lambda t: t.count("usage") == 1)
        # bad typed turns are refused, and the session goes on
        for bad in ({"type": "text", "text": ""}, {"type": "text"}, {"type": "text", "text": 7},
                    {"type": "text", "text": "é" * (16 * 1024 + 1)}, {"type": "text", "text": "x", "role": "user"}):
            await ws.send_str(json.dumps(bad))
        await got.read(ws, lambda t: t.count("error") == 5)
        await ws.send_str(json.dumps({"type": "text", "text": "again"}))
        await got.read(ws, lambda t: t.count("usage") == 2)
    frames = [f for f in got.frames() if f["type"] != "transcript" or f["final"]]
    assert frames[0] == {"type": "transcript", "role": "user", "text": "Bonjour, ça va ?", "final": True}
    finals = [f["text"] for f in got.frames("transcript") if f["role"] == "assistant" and f["final"]]
    assert finals == ["You wrote: Bonjour, ça va ?", "You wrote: again"]
    assert {e["code"] for e in got.frames("error")} == {"invalid_message"}
    assert "speech" not in [f["type"] for f in got.frames()]  # nobody spoke
    assert got.kinds().count("usage") == 2 and got.kinds()[-2:] == ["audio", "usage"]
    assert sim.violations == []


async def test_python_sdk_hands_free_and_typed_turns(bridge, sim, provider):
    from speko_bridge.client import Speko
    from speko_bridge.frames import Audio, Speech, Transcript, Usage

    from .conftest import API_KEY

    seen: list = []
    async with Speko(bridge.base, API_KEY) as speko:
        async with speko.realtime.connect(provider=provider, model={"openai": "gpt-realtime", "google":
                                          "gemini-2.5-flash-native-audio-preview-12-2025", "xai": "grok-voice-latest"}[provider],
                                          turn_detection=SERVER_TURNS) as session:
            assert session.session.turn_detection == SERVER_TURNS
            await session.send_audio(utterance(0.5))
            async for frame in session:
                seen.append(frame)
                if isinstance(frame, Usage):
                    break
            await session.send_text("hello")
            async for frame in session:
                seen.append(frame)
                if isinstance(frame, Usage):
                    break
    kinds = [type(f).__name__ for f in seen if not isinstance(f, (Audio, Transcript))]
    assert kinds == ["Speech", "Speech", "Usage", "Usage"], kinds
    assert [f.state for f in seen if isinstance(f, Speech)] == ["started", "stopped"]
    assert Transcript("user", "hello", True) in seen
