"""Mint throughput: CONCURRENCY aiohttp clients POSTing back to back for SECONDS; requests
per second and latency percentiles. Used against the real server (real SQLite file) and the
bare endpoint (bench/bare_app.py) in the same run."""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp
from common import API_KEY, pct

BODY = {"provider": "openai", "model": "gpt-realtime", "inputSampleRate": 16000,
        "systemPrompt": "You are a helpful assistant.", "metadata": {"user": "u_123"}}
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


async def run(name: str, base: str, concurrency: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        for _ in range(20):  # warm the connection pool and the server
            async with http.post(f"{base}/v1/sessions", json=BODY, headers=HEADERS) as r:
                await r.read()
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                async with http.post(f"{base}/v1/sessions", json=BODY, headers=HEADERS) as r:
                    await r.read()
                    errors += r.status != 201
                latencies.append((time.perf_counter() - t) * 1000)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"target": name, "concurrency": concurrency, "rps": len(latencies) / elapsed,
            "p50_ms": statistics.median(latencies), "p99_ms": pct(latencies, 99), "errors": errors}
