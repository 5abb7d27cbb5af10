"""One session's round trip, through the bridge and straight to the echo simulator, in one run.

Each 20 ms frame carries a sequence number; the simulator (echo mode) sends every appended
chunk straight back as an output delta. Frames are paced at real time. Prints p50/p99 for
both paths and the bridge's added latency; reports lost or reordered frames.

    .venv/bin/python bench/latency.py [--frames 500] [--rate 24000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import struct
import tempfile
import time

import aiohttp

from speko_bridge.simulator.openai import OpenAISimConfig, OpenAISimulator


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def frame(seq: int, rate: int) -> bytes:
    n = rate // 50  # 20 ms of samples
    return struct.pack("<I", seq) + b"\x01\x00" * (n - 2)


async def through_bridge(http, base: str, key: str, frames: int, rate: int) -> tuple[list[float], int]:
    async with http.post(f"{base}/v1/sessions", headers={"Authorization": f"Bearer {key}"},
                         json={"provider": "openai", "model": "gpt-realtime",
                               "inputSampleRate": rate, "outputSampleRate": rate}) as r:
        created = await r.json()
    sent: dict[int, float] = {}
    rtts: list[float] = []
    order_errors = 0
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        async def reader():
            nonlocal order_errors
            last = -1
            buf = b""
            size = rate // 50 * 2
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.BINARY:
                    continue
                buf += msg.data
                while len(buf) >= size:
                    chunk, buf = buf[:size], buf[size:]
                    seq = struct.unpack("<I", chunk[:4])[0]
                    rtts.append((time.perf_counter() - sent[seq]) * 1000)
                    order_errors += seq != last + 1
                    last = seq
                    if seq == frames - 1:
                        return

        task = asyncio.create_task(reader())
        await asyncio.sleep(0.3)  # let the upstream session come up
        start = time.perf_counter()
        for seq in range(frames):
            await asyncio.sleep(max(0, start + seq * 0.02 - time.perf_counter()))
            sent[seq] = time.perf_counter()
            await ws.send_bytes(frame(seq, rate))
        await asyncio.wait_for(task, 10)
    return rtts, order_errors + (frames - len(rtts))


async def direct(http, url: str, frames: int) -> list[float]:
    rtts: list[float] = []
    async with http.ws_connect(url + "?model=gpt-realtime", headers={"Authorization": "Bearer sk-sim"}) as ws:
        await ws.receive()  # session.created
        start = time.perf_counter()
        for seq in range(frames):
            await asyncio.sleep(max(0, start + seq * 0.02 - time.perf_counter()))
            t = time.perf_counter()
            await ws.send_str(json.dumps({"type": "input_audio_buffer.append",
                                          "audio": base64.b64encode(frame(seq, 24000)).decode()}))
            while True:
                msg = json.loads((await ws.receive()).data)
                if msg["type"] == "response.output_audio.delta":
                    break
            rtts.append((time.perf_counter() - t) * 1000)
    return rtts


async def main(frames: int, rate: int) -> None:
    import socket

    import uvicorn

    from speko_bridge.app import create_app
    from speko_bridge.config import load_settings

    sim = OpenAISimulator(OpenAISimConfig(echo=True, validate=False))
    await sim.start()
    key = "bench-key-0123456789abcdef"
    with tempfile.TemporaryDirectory() as tmp:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        settings = load_settings({"SPEKO_API_KEYS": key, "SPEKO_SIGNING_KEY": "b" * 40, "SPEKO_DATA_DIR": tmp,
                                  "SPEKO_OPENAI_URL": sim.url, "OPENAI_API_KEY": "sk-sim"}, port=port)
        server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        async with aiohttp.ClientSession() as http:
            d = await direct(http, sim.url, frames)
            b, errors = await through_bridge(http, f"http://127.0.0.1:{port}", key, frames, rate)
        server.should_exit = True
        await task
    await sim.stop()
    print(f"{'path':24} {'p50 ms':>8} {'p99 ms':>8}   ({frames} frames of 20 ms at {rate} Hz, paced)")
    print(f"{'direct to simulator':24} {statistics.median(d):8.3f} {pct(d, 99):8.3f}")
    print(f"{'through the bridge':24} {statistics.median(b):8.3f} {pct(b, 99):8.3f}")
    print(f"{'added by the bridge':24} {statistics.median(b) - statistics.median(d):8.3f} "
          f"{pct(b, 99) - pct(d, 99):8.3f}")
    print(f"lost or reordered frames: {errors}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=500)
    ap.add_argument("--rate", type=int, default=24000, choices=[16000, 24000])
    args = ap.parse_args()
    asyncio.run(main(args.frames, args.rate))
