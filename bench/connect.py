"""Connect: from the client starting its WebSocket handshake to the first message the
upstream receives, one socket at a time (so nothing queues behind anything). The upstream
stamps first messages with CLOCK_MONOTONIC, the same clock as ``time.monotonic`` here."""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp
from common import endpoint_and_tokens, pct


async def run(target: str, url: str | None, k: int, *, echo_base: str, bridge_base: str | None = None) -> dict:
    async with aiohttp.ClientSession() as http:
        url, tokens = await endpoint_and_tokens(http, target, url, k, 24000, bridge_base)
        await (await http.post(echo_base + "/stats/reset")).read()
        starts = []
        for token in tokens:
            t = time.monotonic()
            ws = await http.ws_connect(url, protocols=[token] if token else (), compress=0)
            starts.append(t)
            await asyncio.sleep(0.04)  # the upstream leg completes well within this
            await ws.close()
            await asyncio.sleep(0.01)
        async with http.get(echo_base + "/stats") as r:
            firsts = (await r.json())["first_messages"]
    if len(firsts) != k:
        raise RuntimeError(f"{target}: {len(firsts)} upstream first messages for {k} sockets")
    ms = [(f - s) * 1000 for s, f in zip(starts, firsts)]
    return {"target": target, "sockets": k, "p50_ms": statistics.median(ms), "p99_ms": pct(ms, 99)}
