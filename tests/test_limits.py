"""Limits that hold against a hostile or broken client, over real sockets: per-key slots that
replayed tokens cannot free, a session cap that holds under concurrency, close codes a client
cannot forge into the record, input read no faster than real time, memory bounded in bytes
whatever the message sizes, and a TCP connection that really goes when a client stops reading."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from pathlib import Path

import aiohttp
import pytest

from .conftest import API_KEY, OTHER_KEY, SIGNING_KEY, auth, run_bridge
from .fleet import BridgeProcess
from .wsclient import (
    WEATHER_TOOL,
    RawClient,
    Received,
    closed,
    expect_refusal,
    mint,
    read,
    tone,
    wait_record,
)


def sim_env(env: dict, sim, **extra) -> dict:
    return {**env, "SPEKO_OPENAI_URL": sim.url, "OPENAI_API_KEY": "sk-sim", **extra}


async def open_live(url: str, token: str):
    """A socket whose session started (no refusal within 0.5 s)."""
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(url, protocols=[token])
    with contextlib.suppress(TimeoutError):
        got = await read(ws, Received(), closed, timeout=0.5)
        await http.close()
        raise AssertionError(f"refused: {got.frames}")
    return http, ws


def sample(bridge, name: str, **labels) -> float:
    return bridge.app.state.metrics.registry.get_sample_value(name, labels) or 0.0


# --------------------------------------------------------------------------- per-key slots


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_replayed_tokens_never_free_the_slot_of_a_live_session(http, env, openai_sims, redis_server,
                                                                     backend, tmp_path):
    sim = await openai_sims()
    extra = {"SPEKO_MAX_SESSIONS_PER_KEY": "2"}
    if backend == "redis":
        extra |= {"SPEKO_REDIS_URL": redis_server.url, "SPEKO_REDIS_PREFIX": f"slots-{tmp_path.name}:"}
    async with run_bridge(sim_env(env, sim, **extra)) as b:
        a, c = await mint(http, b), await mint(http, b)
        live = [await open_live(b.ws_url, a["token"]), await open_live(b.ws_url, c["token"])]
        try:
            for _ in range(3):  # each replay is refused as used, and must free nothing
                await expect_refusal(b.ws_url, [a["token"]], 4001, "token_used")
                await expect_refusal(b.ws_url, [c["token"]], 4001, "token_used")
            third = await mint(http, b)
            await expect_refusal(b.ws_url, [third["token"]], 4029, "rate_limited")
            # one live session ends: its slot, and only its slot, comes back
            http_a, ws_a = live.pop(0)
            await ws_a.close()
            await http_a.close()
            await wait_record(http, b, a["sessionId"], "ended")
            live.append(await open_live(b.ws_url, third["token"]))  # refused earlier, still usable
            fourth = await mint(http, b)
            await expect_refusal(b.ws_url, [fourth["token"]], 4029, "rate_limited")
        finally:
            for h, ws in live:
                await ws.close()
                await h.close()


# --------------------------------------------------------------------------- the session cap


async def test_thirty_concurrent_opens_with_a_cap_of_five_start_five(http, env, openai_sims):
    sim = await openai_sims()
    async with run_bridge(sim_env(env, sim, SPEKO_MAX_SESSIONS="5")) as b:
        tokens = [(await mint(http, b))["token"] for _ in range(30)]
        async with aiohttp.ClientSession() as client:
            sockets = await asyncio.gather(*(client.ws_connect(b.ws_url, protocols=[t]) for t in tokens))

            async def outcome(ws) -> int | None:
                try:
                    got = await read(ws, Received(), closed, timeout=1.5)
                except TimeoutError:
                    return None  # live: nothing to say until the user speaks
                assert got.of("error")[0]["code"] == "rate_limited"
                return got.close_code

            outcomes = await asyncio.gather(*(outcome(ws) for ws in sockets))
            assert outcomes.count(None) == 5, outcomes
            assert outcomes.count(4029) == 25, outcomes
            assert len(b.app.state.registry) == 5
            for ws in sockets:
                await ws.close()


# --------------------------------------------------------------------------- client close codes


@pytest.mark.parametrize("code", [4004, 4500, 4502, 3000])
async def test_a_clients_close_code_is_recorded_as_the_clients(http, env, openai_sims, code):
    sim = await openai_sims()
    async with run_bridge(sim_env(env, sim)) as b:
        created = await mint(http, b)
        async with http.ws_connect(b.ws_url, protocols=[created["token"]]) as ws:
            await ws.send_bytes(tone(0.1, 24000))
            await ws.close(code=code)
        rec = await wait_record(http, b, created["sessionId"], "ended")
        assert rec["status"] == "ended" and rec["closeCode"] == 1000, rec
        assert str(code) in rec["closeReason"]
        assert sample(b, "speko_sessions_closed_total", provider="openai", code=str(code)) == 0
        assert sample(b, "speko_sessions_closed_total", provider="openai", code="1000") == 1


# --------------------------------------------------------------------------- input pacing


def appended_bytes(sim) -> int:
    return sum(len(base64.b64decode(e["audio"])) for log in sim.received for e in log
               if e.get("type") == "input_audio_buffer.append")


async def test_audio_sent_far_faster_than_real_time_is_read_at_real_time_plus_the_allowance(http, env, openai_sims):
    sim = await openai_sims()
    async with run_bridge(sim_env(env, sim, SPEKO_AUDIO_BURST_SECONDS="1")) as b:
        created = await mint(http, b)
        chunk = tone(0.1, 24000)  # 100 ms of audio a message, 60 s of it as fast as TCP takes it
        async with http.ws_connect(b.ws_url, protocols=[created["token"]]) as ws:
            started = time.monotonic()

            async def flood():
                for _ in range(600):
                    await ws.send_bytes(chunk)

            sender = asyncio.create_task(flood())
            await asyncio.sleep(2.5)
            elapsed = time.monotonic() - started
            got = appended_bytes(sim) / 48_000  # seconds of audio the provider was sent
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        assert got <= elapsed + 1 + 0.3, (got, elapsed)  # real time + the 1 s allowance (+ a chunk)
        assert got >= 1.5, got  # and it does flow


async def test_a_flood_of_tiny_messages_is_read_no_faster_than_the_message_rate(http, env, openai_sims):
    sim = await openai_sims()
    async with run_bridge(sim_env(env, sim, SPEKO_CLIENT_MESSAGES_PER_SECOND="100")) as b:
        created = await mint(http, b)
        client = await RawClient.connect(b.port, "/v1/realtime", [created["token"]], rcvbuf=65536)
        try:
            started = time.monotonic()
            for _ in range(20_000):
                client.send(b"\x00\x00")
            await asyncio.sleep(2.2)
            elapsed = time.monotonic() - started
            await asyncio.sleep(1.1)  # the session adds its counts to /metrics every second
            read_count = sample(b, "speko_frames_total", provider="openai", direction="client_to_bridge")
            assert 100 <= read_count <= 100 * (elapsed + 1.1) + 100, (read_count, elapsed)
        finally:
            # what the flood left queued would be read at 100 a second: end the session now
            async with http.delete(f"{b.base}/v1/sessions/{created['sessionId']}", headers=auth()):
                pass
            client.close()


# --------------------------------------------------------------------------- memory in bytes


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_clients_that_never_read_large_echoes_keep_the_process_within_its_budget(http, openai_sims, tmp_path):
    """OpenAI echoes a client's session.update whole: 200 KB of instructions a message, 80 messages
    from each of 4 clients that never read. The outbox is bounded in bytes, so the bridge holds
    about 256 KiB per session and pushes back, instead of every echo (16 MB per session)."""
    sim = await openai_sims()
    proc = await BridgeProcess("mem", {
        "SPEKO_API_KEYS": f"{API_KEY},{OTHER_KEY}", "SPEKO_SIGNING_KEY": SIGNING_KEY,
        "SPEKO_DB_PATH": str(tmp_path / "mem.db"), "SPEKO_OPENAI_URL": sim.url, "OPENAI_API_KEY": "sk-sim",
        "SPEKO_SIMULATE": "0", "SPEKO_CLIENT_SEND_TIMEOUT": "60"}, tmp_path).start()
    clients = []
    try:
        before = rss(proc.proc.pid)
        update = json.dumps({"type": "session.update", "session": {"type": "realtime",
                                                                   "instructions": "x" * 200_000}})
        for _ in range(4):
            created = await mint(http, proc)
            client = await RawClient.connect(proc.port, "/v1/openai/realtime",
                                             ["realtime", f"openai-insecure-api-key.{created['token']}"])
            clients.append(client)
            for _ in range(80):
                client.send(update)
        await asyncio.sleep(4)
        grown = rss(proc.proc.pid) - before
        assert grown < 30 * 1024 * 1024, f"bridge grew {grown / 2**20:.1f} MiB"
    finally:
        for client in clients:
            client.close()
        await proc.stop()


# --------------------------------------------------------------------------- the TCP abort


def established(local_port: int, remote_port: int) -> bool:
    """An ESTABLISHED TCP connection from ``local_port`` to ``remote_port`` on loopback (the
    bridge's side of one client connection), from the kernel's own table."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if (state == "01" and int(local.split(":")[1], 16) == local_port
                and int(remote.split(":")[1], 16) == remote_port):
            return True
    return False


async def test_a_client_that_stopped_reading_loses_its_tcp_connection_after_4009(http, env, openai_sims):
    sim = await openai_sims(reply_ms=120_000)  # two minutes of audio, as fast as TCP takes it
    async with run_bridge(sim_env(env, sim, SPEKO_CLIENT_SEND_TIMEOUT="1")) as b:
        created = await mint(http, b)
        client = await RawClient.connect(b.port, "/v1/realtime", [created["token"]])
        try:
            client_port = client.writer.get_extra_info("sockname")[1]
            assert established(b.port, client_port)
            client.send(tone(0.2, 24000))
            client.send('{"type":"commit"}')  # and never read again
            rec = await wait_record(http, b, created["sessionId"], "ended", timeout=10)
            assert rec["closeCode"] == 4009
            deadline = time.monotonic() + 5  # the close handshake gets 2 s, then the abort
            while established(b.port, client_port) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert not established(b.port, client_port), "the bridge kept the connection open"
        finally:
            client.close()


# --------------------------------------------------------------------------- undeclared tools


async def test_a_call_of_an_undeclared_tool_is_answered_to_the_provider_and_never_forwarded(http, env,
                                                                                          openai_sims):
    sim = await openai_sims(undeclared_tool="delete_account")
    async with run_bridge(sim_env(env, sim)) as b:
        created = await mint(http, b, tools=[WEATHER_TOOL])
        async with http.ws_connect(b.ws_url, protocols=[created["token"]]) as ws:
            await ws.send_bytes(tone(0.3, 24000))
            await ws.send_str('{"type":"commit"}')
            # the model's own call goes unanswered by the client; its next reply is what arrives
            got = await read(ws, Received(), lambda r: any(
                f["role"] == "assistant" and f["final"] for f in r.of("transcript")))
        assert got.of("tool_call") == []
        (final,) = [f["text"] for f in got.of("transcript") if f["role"] == "assistant" and f["final"]]
        assert "unknown tool 'delete_account'" in final and "get_weather" in final
        outputs = [e["item"] for log in sim.received for e in log
                   if e.get("type") == "conversation.item.create"]
        assert len(outputs) == 1 and outputs[0]["type"] == "function_call_output"
        assert sample(b, "speko_tool_calls_refused_total", provider="openai") == 1
