"""How long a resume takes (issue 22): from the moment a client whose connection dropped opens
a new socket with the same token, to the ``resumed`` frame and to the first audio frame of
its next turn; beside it, the same for a fresh session (what starting over costs, mint not
counted).

    python bench/resume.py [--n 200] [--out bench/results]   # prints one JSON object

The bridge is the real CLI (``speko-bridge serve``) pinned to its core; the OpenAI simulator
(replies at once, 100 ms deltas) and this load generator share the other one. Each round:
mint, open, speak 0.2 s, commit, hear 0.1 s of the answer, then the TCP connection is
aborted (no close frame: the bridge keeps the session for its grace window); 0.1 s later a
new socket offers the same token, waits for ``resumed``, speaks 0.1 s, commits, and the
clock stops at the first audio frame. Rounds run one at a time: this is latency, not load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import struct
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import API_KEY, PINNED, pct, pin_self, start_bridge, write_result  # noqa: E402

RATE = 24000


def tone(seconds: float) -> bytes:
    n = int(seconds * RATE)
    return struct.pack(f"<{n}h", *(int(8000 * math.sin(2 * math.pi * 440 * i / RATE)) for i in range(n)))


async def first_audio(ws: aiohttp.ClientWebSocketResponse, at_least: int = 1) -> None:
    heard = 0
    while heard < at_least:
        msg = await ws.receive()
        if msg.type is aiohttp.WSMsgType.BINARY:
            heard += len(msg.data)
        elif msg.type is not aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"socket ended: {msg.type} {ws.close_code}")


async def turn(ws, seconds: float) -> None:
    await ws.send_bytes(tone(seconds))
    await ws.send_str('{"type":"commit"}')


async def one_round(http: aiohttp.ClientSession, base: str) -> dict:
    async with http.post(f"{base}/v1/sessions", json={"provider": "openai", "model": "gpt-realtime"},
                         headers={"Authorization": f"Bearer {API_KEY}"}) as r:
        created = await r.json()
    url, token = created["url"], created["token"]
    # a fresh session: open -> first audio of the first turn
    t0 = time.perf_counter()
    ws = await http.ws_connect(url, protocols=[token])
    opened = time.perf_counter()
    await turn(ws, 0.2)
    await first_audio(ws)
    fresh = time.perf_counter() - t0
    await first_audio(ws, int(0.1 * RATE * 2))
    ws._writer.transport.abort()  # the network goes: no close frame, no FIN handshake
    await asyncio.sleep(0.1)
    # the resume: open -> resumed -> (a 0.1 s turn) -> first audio
    t1 = time.perf_counter()
    ws = await http.ws_connect(url, protocols=[token])
    reopened = time.perf_counter()
    msg = await ws.receive()
    resumed_at = time.perf_counter()
    frame = json.loads(msg.data)
    if frame.get("type") != "resumed":
        raise RuntimeError(f"not resumed: {frame}")
    await turn(ws, 0.1)
    await first_audio(ws)
    audio_at = time.perf_counter()
    await ws.close()
    return {"fresh_open_to_audio": fresh, "fresh_handshake": opened - t0,
            "resume_handshake": reopened - t1, "resume_to_resumed": resumed_at - t1,
            "resume_to_audio": audio_at - t1}


async def main(n: int, out: Path | None) -> dict:
    from speko_bridge.simulator.openai import OpenAISimConfig, OpenAISimulator

    pin_self()
    sim = OpenAISimulator(OpenAISimConfig(api_key="sk-sim", reply_ms=1000, validate=False))
    await sim.start("127.0.0.1", 0)
    with tempfile.TemporaryDirectory() as data:
        bridge = await start_bridge(data, sim.url)
        try:
            async with aiohttp.ClientSession() as http:
                await one_round(http, bridge.base)  # warm-up (imports, first resampler)
                rounds = [await one_round(http, bridge.base) for _ in range(n)]
        finally:
            await bridge.stop()
            await sim.stop()
    if sim.connections != n + 1:  # one provider connection per session, resumes included
        raise RuntimeError(f"{sim.connections} provider connections for {n + 1} sessions")
    result: dict = {"rounds": n, "pinned": PINNED, "provider_connections": sim.connections}
    for key in rounds[0]:
        values = [r[key] * 1000 for r in rounds]
        result[key + "_ms"] = {"p50": round(pct(values, 50), 2), "p99": round(pct(values, 99), 2),
                               "max": round(max(values), 2)}
    if out is not None:
        write_result(out, "resume", result)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.n, args.out)), indent=2))
