"""Memory: RSS of the process under test with no sessions, with N idle sessions, and after
one turn on each (bridge: 200 ms of audio, commit, the simulator's whole spoken reply with
transcripts and usage; floor: 200 ms of audio echoed). Per session = growth / N."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import numpy as np
from common import endpoint_and_tokens, rss_bytes

FRAME = np.full(480, 1200, dtype="<i2").tobytes()  # 20 ms at 24 kHz


async def _turn(ws: aiohttp.ClientWebSocketResponse, target: str) -> None:
    for _ in range(10):
        await ws.send_bytes(FRAME)
    if target == "bridge":
        await ws.send_str('{"type":"commit"}')
        async for msg in ws:  # the reply ends with its usage frame
            if msg.type is aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "usage":
                return
        raise RuntimeError("bridge session closed before its turn ended")
    received = 0
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.BINARY:
            received += len(msg.data)
            if received >= 10 * len(FRAME):
                return
    raise RuntimeError("floor session closed before its echo")


async def _settle(pid: int) -> int:
    await asyncio.sleep(1.5)
    return rss_bytes(pid)


async def run(target: str, url: str | None, n: int, *, server_pid: int, echo_base: str,
              bridge_base: str | None = None) -> dict:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        url, tokens = await endpoint_and_tokens(http, target, url, n + 1, 24000, bridge_base)

        async def open_one(token):
            return await http.ws_connect(url, protocols=[token] if token else (), compress=0)

        warm = await open_one(tokens[0])  # imports, caches and pools warm before the baseline
        await _turn(warm, target)
        await warm.close()
        rss0 = await _settle(server_pid)
        sockets = []
        for i in range(1, n + 1, 50):
            sockets += await asyncio.gather(*(open_one(t) for t in tokens[i:i + 50]))
        for _ in range(100):
            async with http.get(echo_base + "/stats") as r:
                if (await r.json())["open"] >= n:
                    break
            await asyncio.sleep(0.1)
        rss_idle = await _settle(server_pid)
        for i in range(0, n, 100):
            await asyncio.gather(*(_turn(ws, target) for ws in sockets[i:i + 100]))
        rss_turn = await _settle(server_pid)
        await asyncio.gather(*(ws.close() for ws in sockets))
    return {"target": target, "sessions": n, "rss0_mib": rss0 / 2**20,
            "idle_kib_per_session": (rss_idle - rss0) / n / 1024,
            "turn_kib_per_session": (rss_turn - rss0) / n / 1024}
