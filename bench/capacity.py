"""Session capacity and added latency: N sessions streaming 20 ms frames at real-time pace.

Three paths carry the same load to the same echo upstream, one after the other:
``direct`` (straight to the upstream, base64 JSON), ``floor`` (bench/floor_relay.py) and
``bridge`` (speko_bridge, minted tokens, real codec and resampler).

Each frame carries its sequence number in a way resampling cannot erase: frame k is a
constant level (``level(k)``), so 16 -> 24 -> 16 kHz keeps it in the frame's middle sample
whatever the chunking. A frame's latency is the latency of its *worst* sample: for a
chunk arriving at t with output samples [a, b), a sample at offset j of frame k has waited
t - sent[k] - j / rate (its place in the frame is when a real-time source would have
produced it). A resampler that holds back d ms of audio therefore shows as +d ms, not as a
whole frame. A frame is lost if its samples never all arrive, reordered (or corrupted) if
its middle sample does not carry its own level.
"""

from __future__ import annotations

import asyncio
import base64
import statistics
import time

import aiohttp
import msgspec
import numpy as np
from common import SIM_KEY, CpuMeter, endpoint_and_tokens, pct

FRAME_MS = 20
#: Frames before this many seconds are warm-up: streamed and checked, not timed.
WARMUP_S = 1.0
#: The last frames may sit in the resamplers' filters (no end of turn in an echo stream).
TAIL_FRAMES = 3
#: What the load generator offers as permessage-deflate (aiohttp's ``compress``): 0, none,
#: by default; bench/stack.py sets 15 to offer it as every browser does.
CLIENT_COMPRESS = 0


def level(k: int) -> int:
    return ((k % 61) - 30) * 800


class _Delta(msgspec.Struct):
    type: str
    delta: str = ""


_decode_delta = msgspec.json.Decoder(_Delta).decode


class Stream:
    """One session's sender and checker."""

    def __init__(self, rate: int, frames: int) -> None:
        self.rate = rate
        self.F = rate * FRAME_MS // 1000
        self.frames = frames
        self.sent = [0.0] * frames
        self.worst = [0.0] * frames  # worst sample latency seen so far, per frame
        self.latencies: list[float] = []  # per complete timed frame, ms
        self.received = 0  # samples
        self.complete = 0  # frames whose samples all arrived
        self.bad = 0  # frames whose middle sample is not their level
        self.extra = 0  # samples beyond what was sent
        self.warmup_frames = int(WARMUP_S * 1000 / FRAME_MS)
        self.pcm = [np.full(self.F, level(k), dtype="<i2").tobytes() for k in range(61)]

    def frame(self, k: int) -> bytes:
        return self.pcm[k % 61]

    def on_audio(self, pcm: bytes, t: float) -> None:
        samples = np.frombuffer(pcm, dtype="<i2")
        F, a = self.F, self.received
        b = a + len(samples)
        self.received = b
        k = a // F
        while k * F < b:
            if k >= self.frames or self.sent[k] == 0.0:
                self.extra += b - max(a, k * F)
                return
            start = k * F
            offset = max(a, start) - start
            wait = t - self.sent[k] - offset / self.rate
            if wait > self.worst[k]:
                self.worst[k] = wait
            mid = start + F // 2
            if a <= mid < b and abs(int(samples[mid - a]) - level(k)) > 400:
                self.bad += 1
            if b >= start + F:  # frame k complete
                self.complete += 1
                if k >= self.warmup_frames:
                    self.latencies.append(self.worst[k] * 1000)
            k += 1


async def _session(http: aiohttp.ClientSession, target: str, url: str, token: str | None,
                   stream: Stream, t0: float, offset: float) -> None:
    direct = target == "direct"
    if direct:
        ws = await http.ws_connect(url + "?model=gpt-realtime", compress=0,
                                   headers={"Authorization": f"Bearer {SIM_KEY}"})
    else:
        ws = await http.ws_connect(url, protocols=[token] if token else (), compress=CLIENT_COMPRESS)

    async def reader() -> None:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.BINARY:
                stream.on_audio(msg.data, time.perf_counter())
            elif direct and msg.type is aiohttp.WSMsgType.TEXT:
                event = _decode_delta(msg.data)
                if event.type == "response.output_audio.delta":
                    stream.on_audio(base64.b64decode(event.delta), time.perf_counter())
            if stream.complete >= stream.frames - TAIL_FRAMES:
                return

    task = asyncio.create_task(reader())
    try:
        for k in range(stream.frames):
            delay = t0 + offset + k * FRAME_MS / 1000 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            stream.sent[k] = time.perf_counter()
            if direct:
                await ws.send_str('{"type":"input_audio_buffer.append","audio":"'
                                  + base64.b64encode(stream.frame(k)).decode() + '"}')
            else:
                await ws.send_bytes(stream.frame(k))
        try:
            await asyncio.wait_for(asyncio.shield(task), 20.0)  # late is not lost
        except TimeoutError:
            pass  # counted as lost
    finally:
        task.cancel()
        await ws.close()


async def run(target: str, url: str, n: int, seconds: float, rate: int, *, server_pid: int | None,
              bridge_base: str | None = None) -> dict:
    """Run N paced sessions against one path; return the figures."""
    frames = int((WARMUP_S + seconds) * 1000 / FRAME_MS)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        url, tokens = await endpoint_and_tokens(http, target, url, n, rate, bridge_base)
        streams = [Stream(rate, frames) for _ in range(n)]
        t0 = time.perf_counter() + 1.0 + n * 0.004  # everyone connected before the first frame
        tasks = [asyncio.create_task(_session(http, target, url, tokens[i], streams[i], t0,
                                              i * FRAME_MS / 1000 / n))
                 for i in range(n)]
        meter = None
        if server_pid is not None:
            await asyncio.sleep(max(0.0, t0 + WARMUP_S - time.perf_counter()))
            meter = CpuMeter(server_pid)
            await asyncio.sleep(max(0.0, t0 + WARMUP_S + seconds - time.perf_counter()))
            cpu = meter.percent()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    latencies = [x for s in streams for x in s.latencies]
    expected = frames - TAIL_FRAMES
    lost = sum(max(0, expected - s.complete) for s in streams)
    bad = sum(s.bad for s in streams)
    return {
        "target": target, "sessions": n, "rate": rate, "seconds": seconds,
        "frames_sent": sum(sum(1 for x in s.sent if x) for s in streams),
        "frames_timed": len(latencies),
        "lost": lost, "reordered": bad, "extra_samples": sum(s.extra for s in streams),
        "session_errors": [repr(e)[:200] for e in errors[:3]], "session_error_count": len(errors),
        "p50_ms": statistics.median(latencies) if latencies else None,
        "p99_ms": pct(latencies, 99) if latencies else None,
        "cpu_pct": cpu if meter else None,
    }
