"""What operators see: ``/metrics`` counts what happened, and the JSON logs carry the
session id and provider but never a token, a key or audio."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import socket

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from speko_bridge import logs

from .conftest import API_KEY, SIGNING_KEY, run_bridge
from .wsclient import (
    Received,
    expect_refusal,
    interrupt_mid_answer,
    mint,
    read,
    tone,
    wait_record,
)


@pytest.fixture
async def sim(openai_sims):
    # replies stream for a while, so an interrupt finds one in flight
    return await openai_sims(reply_ms=3000, delta_interval=0.02)


@pytest.fixture
async def bridge(env, sim):
    async with run_bridge({**env, "SPEKO_OPENAI_URL": sim.url, "OPENAI_API_KEY": "sk-sim"}) as server:
        yield server


async def scrape(http, bridge) -> dict[tuple[str, tuple], float]:
    async with http.get(f"{bridge.base}/metrics") as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_a_session_each_way(http, bridge):
    await expect_refusal(bridge.ws_url, ["not-a-token"], 4001, "invalid_token")
    created = await mint(http, bridge)
    async with http.ws_connect(bridge.ws_url, protocols=[created["token"]]) as ws:
        got, _ = await interrupt_mid_answer(ws)  # sends audio, commit, interrupt
        live = await scrape(http, bridge)
        assert value(live, "speko_sessions_active", provider="openai") == 1
    await wait_record(http, bridge, created["sessionId"], "ended")
    m = await scrape(http, bridge)
    assert value(m, "speko_sessions_active", provider="openai") == 0
    assert value(m, "speko_sessions_minted_total", provider="openai") == 1
    assert value(m, "speko_sessions_closed_total", provider="openai", code="1000") == 1
    assert value(m, "speko_sockets_refused_total", code="4001") == 1
    assert value(m, "speko_upstream_connect_seconds_count", provider="openai") == 1
    up = dict(provider="openai", direction="client_to_bridge")
    assert value(m, "speko_frames_total", **up) == 3
    assert value(m, "speko_bytes_total", **up) == len(tone(0.3, 24000)) + len('{"type":"commit"}') + len(
        '{"type":"interrupt"}')
    down = dict(provider="openai", direction="bridge_to_client")
    assert value(m, "speko_frames_total", **down) > 10
    assert value(m, "speko_bytes_total", **down) > 24000 * 2 * 0.3
    usage = got.of("usage")[0]
    assert value(m, "speko_usage_tokens_total", provider="openai", kind="output_audio") == usage["outputAudioTokens"]
    # the client kept up: everything the reply sent before the cancel reached it
    assert value(m, "speko_audio_dropped_bytes_total", provider="openai", reason="interrupted") == 0


def small_receive_buffer(addr_info) -> socket.socket:
    """A client socket with a fixed 64 KiB receive buffer (no autotuning up to tens of MB),
    so a listener that stops reading makes audio pile up in the bridge, as over a real
    network, instead of in loopback's kernel buffers."""
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family, type_, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    return sock


async def test_metrics_count_audio_an_interrupt_dropped(bridge, sim):
    reply_seconds = 300  # 14 MB of audio at once: far more than the server's 4 MB send buffer
    sim.config.reply_ms = reply_seconds * 1000
    sim.config.delta_interval = 0.0
    connector = aiohttp.TCPConnector(socket_factory=small_receive_buffer)
    async with aiohttp.ClientSession(connector=connector) as http:
        created = await mint(http, bridge)
        async with http.ws_connect(bridge.ws_url, protocols=[created["token"]]) as ws:
            await ws.send_bytes(tone(0.3, 24000))
            await ws.send_str('{"type":"commit"}')
            got = await read(ws, Received(), lambda r: len(r.audio) >= 24000 * 2 * 0.3)
            await asyncio.sleep(0.5)  # a slow listener: the reply piles up in the bridge
            await ws.send_str('{"type":"interrupt"}')
            await read(ws, got, lambda r: r.of("usage"))
        m = await scrape(http, bridge)
    dropped = value(m, "speko_audio_dropped_bytes_total", provider="openai", reason="interrupted")
    delivered = value(m, "speko_bytes_total", provider="openai", direction="bridge_to_client")
    assert dropped > 24000 * 2 * 1, dropped  # seconds of audio never sent
    total = reply_seconds * 24000 * 2
    assert len(got.audio) + dropped <= total and delivered < total


async def test_json_logs_carry_context_and_never_a_secret(http, env, sim):
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logs.configure("json", "debug", stream)  # even at debug
    try:
        async with run_bridge({**env, "SPEKO_OPENAI_URL": sim.url, "OPENAI_API_KEY": "sk-sim"}) as bridge:
            created = await mint(http, bridge)
            speech = tone(0.4, 24000)
            async with http.ws_connect(bridge.ws_url, protocols=[created["token"]]) as ws:
                await ws.send_bytes(speech)
                await ws.send_str('{"type":"commit"}')
                got = await read(ws, Received(), lambda r: r.of("usage"))
            await expect_refusal(bridge.ws_url, [created["token"]], 4001, "token_used")
            await wait_record(http, bridge, created["sessionId"], "ended")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    text = stream.getvalue()
    entries = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    ended = [e for e in entries if e["message"] == "session ended"]
    assert ended and ended[0]["session_id"] == created["sessionId"]
    assert ended[0]["provider"] == "openai" and ended[0]["close_code"] == 1000
    assert any(e["level"] == "debug" for e in entries)
    secrets = [created["token"], created["token"].split(".")[1], API_KEY, SIGNING_KEY, "sk-sim",
               base64.b64encode(speech[:3000]).decode()[:40], base64.b64encode(got.audio[:3000]).decode()[:40]]
    for secret in secrets:
        assert secret not in text, secret[:12]
