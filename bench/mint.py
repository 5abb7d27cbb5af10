"""Mint throughput: a real `speko-bridge serve` process (its own SQLite file in a temp dir)
and CONCURRENCY aiohttp clients minting for DURATION seconds. Prints mints/s and latency
percentiles.

    .venv/bin/python bench/mint.py [concurrency] [seconds]
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import sys
import tempfile
import time

import aiohttp

API_KEY = "sk_bench_0123456789abcdef"
BODY = {"provider": "openai", "model": "gpt-realtime", "inputSampleRate": 16000,
        "systemPrompt": "You are a helpful assistant.", "metadata": {"user": "u_123"}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def main(concurrency: int, duration: float) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SPEKO_API_KEYS": API_KEY, "SPEKO_SIGNING_KEY": "b" * 40,
               "SPEKO_DATA_DIR": tmp, "OPENAI_API_KEY": "sk-unused"}
        env.pop("SPEKO_DEV", None)
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "speko_bridge", "serve", "--port", str(port), env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
                for _ in range(200):
                    try:
                        async with http.get(f"{base}/healthz") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.05)
                latencies: list[float] = []
                errors = 0
                deadline = time.perf_counter() + duration

                async def worker() -> None:
                    nonlocal errors
                    headers = {"Authorization": f"Bearer {API_KEY}"}
                    while time.perf_counter() < deadline:
                        t = time.perf_counter()
                        async with http.post(f"{base}/v1/sessions", json=BODY, headers=headers) as r:
                            await r.read()
                            if r.status != 201:
                                errors += 1
                        latencies.append(time.perf_counter() - t)

                start = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                elapsed = time.perf_counter() - start
        finally:
            server.terminate()
            await server.wait()
    q = statistics.quantiles(latencies, n=100)
    print(f"mint: {concurrency} concurrent clients, {elapsed:.1f} s, one server process, SQLite file")
    print(f"  {len(latencies) / elapsed:8.0f} mints/s   errors {errors}")
    print(f"  latency p50 {q[49] * 1000:.2f} ms   p99 {q[98] * 1000:.2f} ms")


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(int(args[0]) if args else 16, float(args[1]) if len(args) > 1 else 5.0))
