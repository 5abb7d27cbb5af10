"""The browser SDK's reconnection decisions, run by Node (its WebSocket is the WHATWG one the
browser SDK is written for) against the real bridge, through a TCP proxy the test stops:
codes that must not be retried end for good, and when resuming is impossible getSession()
starts a fresh session, and a network down for most of the window is still resumed. (The
default policy's resume is shown in Chromium: tests/test_browser.py.)"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from .conftest import API_KEY, auth, run_bridge
from .tcpproxy import TcpProxy
from .wsclient import mint

NODE = shutil.which("node")
ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).parent / "node" / "sdk_reconnect.mjs"
SDK = (ROOT / "speko_bridge" / "static" / "sdk" / "speko-realtime.js").as_uri()
pytestmark = pytest.mark.skipif(NODE is None, reason="node missing")


@pytest.fixture
async def bridge(env, openai_sims):
    sim = await openai_sims(reply_ms=500)
    async with run_bridge({**env, "SPEKO_OPENAI_URL": sim.url, "OPENAI_API_KEY": "sk-sim"}) as server:
        server.sim = sim
        yield server


@pytest.fixture
async def proxy(bridge):
    p = await TcpProxy(bridge.port).start()
    yield p
    await p.stop()


class NodeSession:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict] = []

    async def until(self, kind: str, timeout: float = 15.0) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise AssertionError(f"node ended before {kind}: {self.events} "
                                         f"{(await self.proc.stderr.read()).decode()[-2000:]}")
                event = json.loads(line)
                self.events.append(event)
                if event["type"] == kind:
                    return event

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


async def start(mode: str, answer: dict, bridge) -> NodeSession:
    proc = await asyncio.create_subprocess_exec(
        NODE, "--experimental-websocket", "--no-warnings", str(SCRIPT), SDK, mode, json.dumps(answer),
        bridge.base, API_KEY, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    return NodeSession(proc)


async def test_a_revoked_session_is_not_retried(http, bridge, proxy):
    created = await mint(http, bridge)
    node = await start("plain", {**created, "url": proxy.url(created["url"], bridge.port)}, bridge)
    try:
        await node.until("open")
        async with http.delete(f"{bridge.base}/v1/sessions/{created['sessionId']}", headers=auth()) as r:
            assert r.status == 200
        done = await node.until("done")
        assert done["code"] == 4004
        assert "reconnecting" not in node.types() and node.types().count("close") == 1
    finally:
        await node.stop()


async def test_get_session_starts_over_when_the_window_runs_out(http, bridge, proxy):
    created = await mint(http, bridge)
    node = await start("restart", {**created, "url": proxy.url(created["url"], bridge.port)}, bridge)
    try:
        await node.until("open")
        await proxy.stop()  # down for longer than the SDK's 0.8 s window
        reconnecting = await node.until("reconnecting")
        assert reconnecting["code"] == 1006
        sent = await node.until("sendAudio")
        assert sent == {"type": "sendAudio", "accepted": False, "dropped": 2 * 24000 * 0.3}
        restarted = await node.until("restarted")
        assert restarted["sessionId"] not in (None, created["sessionId"])
        await node.until("usage")  # the fresh session answers (it was minted on the bridge directly)
        done = await node.until("done")
        assert (done["code"], done["sessionId"]) == (1000, restarted["sessionId"])
        assert node.types().count("close") == 1 and "resumed" not in node.types()
    finally:
        await node.stop()
    assert bridge.sim.connections == 2


async def test_a_network_down_for_most_of_the_window_is_resumed(http, bridge, proxy):
    """Attempts go on until the window runs out, however short the random waits come out: a
    network down for 2.5 s of a 4 s window (steps of 50-250 ms, so a fixed handful of
    attempts would be spent in the first second) is found when it comes back, and the same
    session answers."""
    created = await mint(http, bridge)
    node = await start("long", {**created, "url": proxy.url(created["url"], bridge.port)}, bridge)
    try:
        await node.until("open")
        await proxy.stop()
        await node.until("reconnecting")
        await asyncio.sleep(2.5)
        await proxy.start()
        back = asyncio.get_running_loop().time()
        resumed = await node.until("resumed", timeout=5)
        waited = asyncio.get_running_loop().time() - back
        assert resumed["sessionId"] == created["sessionId"]
        await node.until("usage")  # the same session answers a turn
        done = await node.until("done")
        assert (done["code"], done["sessionId"]) == (1000, created["sessionId"])
        assert "restarted" not in node.types() and node.types().count("close") == 1
        attempts = [e for e in node.events if e["type"] == "reconnecting"]
        assert all(e["delayMs"] <= 250 for e in attempts), attempts
        assert waited < 1.5  # found within a step (250 ms) and the open, with room for a busy machine
    finally:
        await node.stop()
    assert bridge.sim.connections == 1  # one provider connection: nothing started over


async def test_connect_to_a_bridge_that_cannot_be_reached_fails_at_once(http, bridge, proxy):
    """Nothing listens at the minted url (the network is down before the first socket):
    connect() rejects with connection_failed and close code 1006 as soon as the socket
    fails, not when its 10 s timeout runs out."""
    created = await mint(http, bridge)
    await proxy.stop()
    node = await start("plain", {**created, "url": proxy.url(created["url"], bridge.port)}, bridge)
    try:
        refused = await node.until("refused", timeout=8)
    finally:
        await node.stop()
    assert (refused["code"], refused["closeCode"]) == ("connection_failed", 1006)
    assert refused["ms"] < 5000  # since node started; the SDK's timeout is 10 s
