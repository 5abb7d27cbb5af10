"""The Python SDK's reconnection against the real bridge, with the network between them cut
by stopping a TCP proxy (``tests/tcpproxy.py``) and starting it again."""

from __future__ import annotations

import asyncio

import pytest

from speko_bridge.client import Reconnect, connect
from speko_bridge.frames import Audio, Usage

from .conftest import auth, run_bridge
from .tcpproxy import TcpProxy
from .wsclient import mint, tone, wait_record


@pytest.fixture
async def sim(openai_sims):
    return await openai_sims(reply_ms=3000, delta_interval=0.02)


@pytest.fixture
async def bridge(env, sim):
    async with run_bridge({**env, "SPEKO_OPENAI_URL": sim.url, "OPENAI_API_KEY": "sk-sim"}) as server:
        yield server


@pytest.fixture
async def proxy(bridge):
    p = await TcpProxy(bridge.port).start()
    yield p
    await p.stop()


def through(proxy: TcpProxy, bridge, answer: dict) -> dict:
    return {**answer, "url": proxy.url(answer["url"], bridge.port)}


async def until(rt, kind, n: int = 1, timeout: float = 10.0):
    seen = []
    async with asyncio.timeout(timeout):
        async for frame in rt:
            if type(frame).__struct_config__.tag == kind or (kind == "audio" and isinstance(frame, Audio)):
                seen.append(frame)
                if len(seen) >= n:
                    return seen
    return seen


async def test_a_dropped_network_is_resumed_and_the_conversation_goes_on(http, bridge, sim, proxy):
    created = await mint(http, bridge)
    events: list[str] = []
    policy = Reconnect(base_delay=0.2, max_delay=0.5)
    async with connect(through(proxy, bridge, created), reconnect=policy, timeout=5) as rt:
        rt.on(lambda f: events.append(f.type if isinstance(f, Audio) else type(f).__struct_config__.tag))
        await rt.send_audio(tone(0.3, 24000))
        await rt.commit()
        await until(rt, "audio")
        await proxy.stop()  # the network goes away mid-answer
        await until(rt, "reconnecting")
        await rt.send_audio(tone(0.2, 24000))  # while disconnected: dropped, not queued
        assert rt.dropped_audio_bytes == 2 * 24000 * 0.2
        await asyncio.sleep(0.5)
        await proxy.start()  # and comes back on the same address
        (resumed,) = await until(rt, "resumed")
        assert resumed.session_id == created["sessionId"] == rt.session_id
        await rt.send_audio(tone(0.3, 24000))
        await rt.commit()
        await until(rt, "usage", n=1)
    assert events.count("close") == 1 and events[-1] == "close"
    assert "reconnecting" in events and events.index("resumed") > events.index("reconnecting")
    assert rt.close_code == 1000
    assert sim.connections == 1
    rec = await wait_record(http, bridge, created["sessionId"], "ended")
    assert rec["closeCode"] == 1000


async def test_a_network_down_for_most_of_the_window_is_resumed(http, bridge, sim, proxy):
    """Attempts go on until the window runs out, however short the random waits come out: a
    network down for 2.5 s of a 4 s window (steps of 50-250 ms, so a fixed handful of
    attempts would be spent in the first second) is found within a step of coming back."""
    created = await mint(http, bridge)
    attempts: list = []
    policy = Reconnect(base_delay=0.05, max_delay=0.25, window=4.0)
    async with connect(through(proxy, bridge, created), reconnect=policy, timeout=5) as rt:
        rt.on("reconnecting", attempts.append)
        await proxy.stop()
        await until(rt, "reconnecting")
        await asyncio.sleep(2.5)
        await proxy.start()
        back = asyncio.get_running_loop().time()
        (resumed,) = await until(rt, "resumed")
        waited = asyncio.get_running_loop().time() - back
        assert resumed.session_id == created["sessionId"] == rt.session_id
        await rt.send_audio(tone(0.3, 24000))
        await rt.commit()
        await until(rt, "usage")
    assert waited < 1.5  # a step (250 ms) and the open, with room for a busy machine
    assert all(0.025 <= a.delay <= 0.25 for a in attempts), attempts
    assert rt.close_code == 1000 and sim.connections == 1


def test_a_reconnect_policy_that_cannot_work_is_refused_when_made():
    for bad in ({"base_delay": 0}, {"base_delay": 2.0, "max_delay": 1.0}, {"window": 0}, {"attempts": 0}):
        with pytest.raises(ValueError):
            Reconnect(**bad)


async def test_codes_that_must_not_be_retried_end_for_good(http, bridge, proxy):
    created = await mint(http, bridge)
    events: list[str] = []
    async with connect(through(proxy, bridge, created), reconnect=True) as rt:
        rt.on(lambda f: events.append(type(f).__struct_config__.tag if not isinstance(f, Audio) else "audio"))
        async with http.delete(f"{bridge.base}/v1/sessions/{created['sessionId']}", headers=auth()) as r:
            assert r.status == 200
        await until(rt, "close")
    assert rt.close_code == 4004 and "reconnecting" not in events


async def test_when_resuming_is_impossible_get_session_starts_over(http, bridge, sim, proxy):
    created = await mint(http, bridge)
    fresh: list[dict] = []

    async def get_session():
        fresh.append(await mint(http, bridge))
        return fresh[-1]

    policy = Reconnect(base_delay=0.2, max_delay=0.3, window=0.8, get_session=get_session)
    async with connect(through(proxy, bridge, created), reconnect=policy) as rt:
        await proxy.stop()  # down for longer than the client's window
        (restarted,) = await until(rt, "restarted")
        assert restarted.session_id == fresh[0]["sessionId"] == rt.session_id != created["sessionId"]
        await rt.send_audio(tone(0.3, 24000))
        await rt.commit()
        usage = await until(rt, "usage")
        assert isinstance(usage[0], Usage)
    assert sim.connections == 2  # a new session is a new provider connection


async def test_a_refused_connect_raises_and_does_not_reconnect(http, bridge):
    """Reconnection is for sessions the bridge accepted: a socket refused at connect (here
    1001 from a draining server, which reconnection would answer with get_session) raises
    from connect() and calls nothing."""
    from speko_bridge.client import SpekoError

    created = await mint(http, bridge)
    calls: list[int] = []

    async def get_session():
        calls.append(1)
        return await mint(http, bridge)

    bridge.app.state.draining = True  # what SIGTERM's drain sets first (speko_bridge/app.py)
    try:
        with pytest.raises(SpekoError) as refused:
            async with connect(created, reconnect=True, get_session=get_session):
                pass
    finally:
        bridge.app.state.draining = False
    assert refused.value.close_code == 1001
    await asyncio.sleep(0.3)
    assert calls == []
