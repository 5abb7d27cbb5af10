"""What users hear: from the client's ``commit`` to the first audio of the answer, through the
bridge versus straight to the provider, with N sessions taking turns at once.

Each session repeats a turn: it speaks (``SPEECH_FRAMES`` 20 ms frames at real-time pace,
as a microphone sends them), commits, and waits for the whole answer before the next turn.
The provider (bench/echo_upstream.py ``--reply-ms``: the OpenAI simulator answering every
``response.create`` at once, no model time) is the same process for both paths, so the
difference between the two is what the bridge adds to a turn: its two hops, the codecs, the
resampler's flush at the commit and its delay on the first chunk of the answer.

- ``direct``: OpenAI's protocol to the provider; ``commit`` is
  ``input_audio_buffer.commit`` + ``response.create``; first audio is the first
  ``response.output_audio.delta``; the turn ends at ``response.done``.
- ``bridge``: the bridge's protocol with minted tokens at the session's rate;
  ``commit`` is ``{"type": "commit"}``; first audio is the first binary frame; the turn
  ends at ``usage``.

Sessions start a fraction of a turn apart, so commits do not line up. The figure is the
latency of every timed turn (after ``WARMUP_TURNS`` per session), p50 and p99.
"""

from __future__ import annotations

import asyncio
import base64
import statistics
import time

import aiohttp
import msgspec
import numpy as np
from common import SIM_KEY, endpoint_and_tokens, pct

FRAME_MS = 20
#: Speech per turn: 200 ms (the provider wants at least 100 ms in a commit).
SPEECH_FRAMES = 10
#: Turns per session not timed (connections and caches warm up).
WARMUP_TURNS = 1
#: The longest a turn may take before the session gives up on it (counted as failed).
TURN_TIMEOUT_S = 10.0

_COMMIT_DIRECT = ('{"type":"input_audio_buffer.commit"}', '{"type":"response.create"}')
_COMMIT_BRIDGE = '{"type":"commit"}'


class _Event(msgspec.Struct):
    type: str


_decode = msgspec.json.Decoder(_Event).decode


def _speech(rate: int) -> list[bytes]:
    n = rate * FRAME_MS // 1000
    t = np.arange(n * SPEECH_FRAMES) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()
    return [pcm[i * 2 * n:(i + 1) * 2 * n] for i in range(SPEECH_FRAMES)]


async def _session(http: aiohttp.ClientSession, target: str, url: str, token: str | None, rate: int,
                   turns: int, start_at: float, out: list[float]) -> None:
    direct = target == "direct"
    if direct:
        ws = await http.ws_connect(url + "?model=gpt-realtime", compress=0,
                                   headers={"Authorization": f"Bearer {SIM_KEY}"})
        await ws.send_str('{"type":"session.update","session":{"type":"realtime","audio":{'
                          '"input":{"turn_detection":null}}}}')
    else:
        ws = await http.ws_connect(url, protocols=[token], compress=0)
    frames = _speech(rate)
    encoded = ['{"type":"input_audio_buffer.append","audio":"' + base64.b64encode(f).decode() + '"}'
               for f in frames]
    first = asyncio.Event()
    done = asyncio.Event()
    at = [0.0]

    async def reader() -> None:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.BINARY:
                if not first.is_set():
                    at[0] = time.perf_counter()
                    first.set()
            elif msg.type is aiohttp.WSMsgType.TEXT:
                kind = _decode(msg.data).type
                if kind == "response.output_audio.delta" and not first.is_set():
                    at[0] = time.perf_counter()
                    first.set()
                elif kind in ("response.done", "usage"):
                    done.set()
                elif kind in ("error", "close"):
                    raise RuntimeError(f"{target}: {msg.data[:200]}")

    task = asyncio.create_task(reader())
    try:
        await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
        for turn in range(turns):
            next_at = time.perf_counter()
            for k in range(SPEECH_FRAMES):
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += FRAME_MS / 1000
                if direct:
                    await ws.send_str(encoded[k])
                else:
                    await ws.send_bytes(frames[k])
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))  # the last frame's 20 ms
            first.clear()
            done.clear()
            t0 = time.perf_counter()
            if direct:
                for text in _COMMIT_DIRECT:
                    await ws.send_str(text)
            else:
                await ws.send_str(_COMMIT_BRIDGE)
            await asyncio.wait_for(first.wait(), TURN_TIMEOUT_S)
            if turn >= WARMUP_TURNS:
                out.append((at[0] - t0) * 1000)
            await asyncio.wait_for(done.wait(), TURN_TIMEOUT_S)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await ws.close()


async def run(target: str, url: str | None, n: int, turns: int, rate: int,
              bridge_base: str | None = None) -> dict:
    """N sessions of ``turns`` turns each on one path; the commit -> first audio figures."""
    connector = aiohttp.TCPConnector(limit=0)
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=connector) as http:
        url, tokens = await endpoint_and_tokens(http, target, url, n, rate, bridge_base)
        turn_s = (SPEECH_FRAMES * FRAME_MS) / 1000
        t0 = time.perf_counter() + 1.0 + n * 0.004
        results = await asyncio.gather(
            *(_session(http, target, url, tokens[i], rate, turns, t0 + i * turn_s / n, latencies)
              for i in range(n)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    return {
        "target": target, "sessions": n, "rate": rate, "turns": len(latencies),
        "p50_ms": statistics.median(latencies) if latencies else None,
        "p99_ms": pct(latencies, 99) if latencies else None,
        "session_errors": [repr(e)[:200] for e in errors[:3]], "session_error_count": len(errors),
    }
