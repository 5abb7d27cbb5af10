"""Hands-free turn latency: from the end of the user's speech to the first audio of the
answer, through the bridge (``turnDetection`` ``server``) versus straight to the simulator.

The client speaks (a tone) and then streams silence **at real time** in 20 ms chunks, as a
microphone does; the provider's voice activity detection (here the simulator's, same
settings both ways: ``silence_duration_ms`` = ``SILENCE_MS``) ends the turn and answers.
t0 is when the last chunk of speech was sent, t1 when the first audio of the answer
arrives. Both paths wait the same silence, so the difference is what the bridge adds
(its two hops, resampling off: 24 kHz both ways, base64 and JSON on the provider side).

    python bench/turn_latency.py [--provider openai|xai|google] [--turns 40]

The simulator runs in this process (as the client does); the bridge is a separate process
pinned to its own core (bench/common.py), with the simulator as its provider.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys  # noqa: E402  (the simulators come from this checkout, as the bridge process does)
import tempfile
import time

import aiohttp
from common import API_KEY, ROOT, SIM_KEY, pct, pin_self, spawn

sys.path.insert(0, str(ROOT))

RATE = 24000
CHUNK_MS = 20
SPEECH_S = 0.4
SILENCE_MS = 200
#: Silence streamed after the speech: the VAD's window and then some, so the answer comes
#: while the microphone is still "open" (as in a real conversation).
TAIL_MS = SILENCE_MS + 800
MODELS = {"openai": "gpt-realtime", "xai": "grok-voice-latest", "google": "gemini-2.5-flash-native-audio-preview-12-2025"}


def speech() -> bytes:
    import numpy as np
    t = np.arange(int(SPEECH_S * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()


SILENCE_CHUNK = bytes(2 * RATE * CHUNK_MS // 1000)


class Clock:
    """Audio sent versus wall time: a microphone never runs ahead of real time (the bridge
    paces a client that does, which would measure the pacing, not the bridge)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.sent_s = 0.0

    async def keep_real_time(self) -> None:
        ahead = self.start + self.sent_s - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)


async def one_turn(send, first_audio: asyncio.Event, clock: Clock) -> float:
    """Speak, then stream silence in real time until the answer's first audio; seconds."""
    await clock.keep_real_time()
    first_audio.clear()
    await send(speech())
    clock.sent_s += SPEECH_S
    t0 = time.perf_counter()
    next_at = t0
    for _ in range(TAIL_MS // CHUNK_MS):
        if first_audio.is_set():
            break
        next_at += CHUNK_MS / 1000
        await send(SILENCE_CHUNK)
        clock.sent_s += CHUNK_MS / 1000
        try:
            await asyncio.wait_for(first_audio.wait(), max(0.0, next_at - time.perf_counter()))
        except TimeoutError:
            pass
    await asyncio.wait_for(first_audio.wait(), 5)
    return first_audio.at - t0  # type: ignore[attr-defined]


class FirstAudio(asyncio.Event):
    at = 0.0


async def direct(sim_url: str, provider: str, turns: int) -> list[float]:
    """OpenAI/xAI protocol straight to the simulator, server VAD on."""
    first = FirstAudio()
    done = asyncio.Event()
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {SIM_KEY}"}
        async with http.ws_connect(sim_url, headers=headers) as ws:
            vad = {"type": "server_vad", "silence_duration_ms": SILENCE_MS, "prefix_padding_ms": 100}
            if provider == "openai":
                session = {"type": "realtime", "audio": {"input": {"turn_detection": vad}}}
            else:
                session = {"turn_detection": vad}
            await ws.send_str(json.dumps({"type": "session.update", "session": session}))

            async def reader():
                async for msg in ws:
                    event = json.loads(msg.data)
                    if event["type"] == "response.output_audio.delta" and not first.is_set():
                        first.at = time.perf_counter()
                        first.set()
                    elif event["type"] == "response.done":
                        done.set()

            task = asyncio.create_task(reader())

            async def send(pcm: bytes) -> None:
                await ws.send_str(json.dumps({"type": "input_audio_buffer.append",
                                              "audio": base64.b64encode(pcm).decode()}))

            out, clock = [], Clock()
            for _ in range(turns):
                done.clear()
                out.append(await one_turn(send, first, clock))
                await asyncio.wait_for(done.wait(), 5)
            task.cancel()
            return out


async def bridged(base: str, provider: str, turns: int) -> list[float]:
    first = FirstAudio()
    usage = asyncio.Event()
    async with aiohttp.ClientSession() as http:
        body = {"provider": provider, "model": MODELS[provider], "ttlSeconds": 1800,
                "turnDetection": {"type": "server", "silenceMs": SILENCE_MS, "prefixMs": 100}}
        async with http.post(f"{base}/v1/sessions", json=body,
                             headers={"Authorization": f"Bearer {API_KEY}"}) as r:
            created = await r.json()
        async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
            async def reader():
                async for msg in ws:
                    if msg.type is aiohttp.WSMsgType.BINARY and not first.is_set():
                        first.at = time.perf_counter()
                        first.set()
                    elif msg.type is aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "usage":
                        usage.set()

            task = asyncio.create_task(reader())
            out, clock = [], Clock()
            for _ in range(turns):
                usage.clear()
                out.append(await one_turn(ws.send_bytes, first, clock))
                await asyncio.wait_for(usage.wait(), 5)
            task.cancel()
            return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--provider", choices=["openai", "xai"], default="openai")
    parser.add_argument("--turns", type=int, default=40)
    args = parser.parse_args()
    pin_self()
    if args.provider == "openai":
        from speko_bridge.simulator.openai import OpenAISimConfig as Config
        from speko_bridge.simulator.openai import OpenAISimulator as Sim
    else:
        from speko_bridge.simulator.xai import XAISimConfig as Config
        from speko_bridge.simulator.xai import XAISimulator as Sim
    sim = Sim(Config(api_key=SIM_KEY, reply_ms=200, validate=False))
    await sim.start("127.0.0.1", 0)
    url_var = {"openai": "SPEKO_OPENAI_URL", "xai": "SPEKO_XAI_URL"}[args.provider]
    key_var = {"openai": "OPENAI_API_KEY", "xai": "XAI_API_KEY"}[args.provider]
    with tempfile.TemporaryDirectory() as data_dir:
        env = {"SPEKO_API_KEYS": API_KEY, "SPEKO_SIGNING_KEY": "b" * 40, "SPEKO_DATA_DIR": data_dir,
               url_var: sim.url, key_var: SIM_KEY, "SPEKO_MINT_RATE_PER_MINUTE": "0"}
        bridge = await spawn("bridge", ["-m", "speko_bridge", "serve", "--port", "{port}",
                                        "--log-level", "warning"], env=env)
        try:
            await direct(sim.url, args.provider, 3)  # warm-up, both paths
            await bridged(bridge.base, args.provider, 3)
            straight = await direct(sim.url, args.provider, args.turns)
            through = await bridged(bridge.base, args.provider, args.turns)
        finally:
            await bridge.stop()
            await sim.stop()
    print(f"end of speech -> first audio, {args.provider}, server VAD silence {SILENCE_MS} ms, "
          f"{args.turns} turns each (ms):")
    for name, values in (("straight to the simulator", straight), ("through the bridge", through)):
        ms = [v * 1000 for v in values]
        print(f"  {name:28s} p50 {pct(ms, 50):7.1f}  p99 {pct(ms, 99):7.1f}  min {min(ms):7.1f}  max {max(ms):7.1f}")
    added = [(b - a) * 1000 for a, b in zip(sorted(straight), sorted(through))]
    print(f"  bridge adds (p50 of sorted pairs): {pct(added, 50):.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
