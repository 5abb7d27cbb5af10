"""Hypothesis, through the real bridge and each provider's simulator in ``server`` turn mode:
for any interleaving of speech, silence, typed turns, ``commit`` and ``interrupt``,

- no audio of a reply follows that reply's ``speech: started`` (the reply under way when the
  user began to speak);
- every model response ends with exactly one ``usage`` (counted against the responses the
  simulator began, cancelled and interrupted ones included)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from .conftest import run_bridge
from .test_conformance import SIMULATORS, provider_env, start_simulator
from .wsclient import mint, tone

RATE = 24000
SERVER_TURNS = {"type": "server", "silenceMs": 200, "prefixMs": 100}
#: No message for this long after the last action: the conversation has settled.
QUIET_SECONDS = 0.6

actions = st.lists(st.one_of(
    st.tuples(st.just("speak"), st.floats(0.15, 0.7)),
    st.tuples(st.just("silence"), st.floats(0.05, 0.5)),
    st.tuples(st.just("wait"), st.floats(0.0, 0.5)),
    st.tuples(st.just("text"), st.sampled_from(["hi", "what time is it?", "ça va"])),
    st.tuples(st.just("commit"), st.none()),
    st.tuples(st.just("interrupt"), st.none()),
), min_size=1, max_size=8)


@pytest.fixture(params=sorted(SIMULATORS))
async def stack(request, env):
    sim = await start_simulator(request.param, reply_ms=3000, delta_interval=0.03)
    async with run_bridge(provider_env(env, request.param, sim.url)) as bridge:
        yield request.param, sim, bridge
    await sim.stop()


async def reader(ws, timeline: list) -> None:
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.BINARY:
            timeline.append(("audio", len(msg.data)))
        elif msg.type is aiohttp.WSMsgType.TEXT:
            timeline.append(("frame", json.loads(msg.data)))


def audio_after_speech_started(timeline: list) -> list[int]:
    """Indexes of audio of a reply cut by ``speech: started``: a reply under way (its audio or
    words seen, its ``usage`` not yet) when the speech began, until that ``usage`` ends it
    (every provider ends the cut reply before it answers the new turn). A reply that begins
    while the user speaks, asked for by a commit or typed turn, is not a cut one."""
    bad, running, cut = [], False, False
    for i, (kind, value) in enumerate(timeline):
        if kind == "audio":
            if cut:
                bad.append(i)
            running = True
        elif kind == "frame":
            t = value["type"]
            if t == "transcript" and value["role"] == "assistant":
                running = True
            elif t == "usage":
                running = cut = False
            elif t == "speech" and value["state"] == "started":
                cut = cut or running
    return bad


@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(script=actions)
@example(script=[("speak", 0.5), ("silence", 0.4), ("wait", 0.4), ("speak", 0.5)])  # barge-in mid-reply
@example(script=[("text", "hi"), ("wait", 0.3), ("interrupt", None), ("speak", 0.3), ("commit", None)])
@example(script=[("speak", 0.5), ("commit", None), ("interrupt", None), ("wait", 0.25)])  # cut before it began
async def test_no_cut_audio_and_one_usage_per_response(http, stack, script):
    provider, sim, bridge = stack
    before = sim.replies
    created = await mint(http, bridge, provider, turnDetection=SERVER_TURNS)
    timeline: list = []
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        task = asyncio.create_task(reader(ws, timeline))
        for action, arg in script + [("silence", 0.4)]:
            if action == "speak":
                await ws.send_bytes(tone(arg, RATE))
            elif action == "silence":
                await ws.send_bytes(bytes(2 * int(arg * RATE)))
            elif action == "wait":
                await asyncio.sleep(arg)
            elif action == "text":
                timeline.append(("sent", "text"))
                await ws.send_str(json.dumps({"type": "text", "text": arg}))
            else:
                timeline.append(("sent", action))
                await ws.send_str(json.dumps({"type": action}))
        # wait until the conversation settles: every reply the provider began is over (a reply
        # the client interrupted before it began is dropped whole, so the client hears nothing
        # until its usage), then nothing more arrives for QUIET_SECONDS
        seen = -1
        async with asyncio.timeout(30):
            while seen != len(timeline) or sim.replies_ended < sim.replies:
                seen = len(timeline)
                await asyncio.sleep(QUIET_SECONDS)
        task.cancel()
    frames = [v for k, v in timeline if k == "frame"]
    assert not [f for f in frames if f["type"] == "close"], frames[-3:]
    assert {f["code"] for f in frames if f["type"] == "error"} <= {"provider_error"}
    assert audio_after_speech_started(timeline) == [], (script, timeline)
    usages = sum(f["type"] == "usage" for f in frames)
    assert usages == sim.replies - before, (script, [f["type"] for f in frames])
    assert sim.violations == []
