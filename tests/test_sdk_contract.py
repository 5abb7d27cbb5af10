"""The Python SDK keeps the published contract, against real servers: one call mints and
connects, ``connect(answer)`` takes the mint answer as it is, refusals and a silent server
fail ``connect`` instead of leaving the failure to arrive later as frames, ``close``
handlers hear about a connection that drops (the bridge process is killed), and nothing
prints the token."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from speko_bridge.client import Speko, SpekoError, connect
from speko_bridge.frames import Audio, Close, Transcript, Usage

from .conftest import API_KEY, SIGNING_KEY
from .fleet import BridgeProcess
from .wsclient import tone

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"


async def test_one_call_mints_and_connects_and_the_handle_keeps_the_contract(gemini_bridge):
    everything: list[str] = []
    async with Speko(gemini_bridge.base, API_KEY) as speko:
        async with speko.realtime.connect(provider="google", model=MODEL, input_sample_rate=16000,
                                          output_sample_rate=16000) as rt:
            off = rt.on(lambda f: everything.append(f.type if isinstance(f, Audio) else type(f).__name__))
            assert rt.session_id.startswith("sess_") and rt.expires_at.endswith("Z")
            assert rt.session.provider == "google" and rt.session.model == MODEL
            for text in (repr(rt), repr(rt.session), str(rt.session), repr(speko)):
                assert rt.session.token not in text and API_KEY not in text, text
            await rt.send_audio(tone(1.0, 16000))
            await rt.commit()
            heard = 0
            async for frame in rt:
                if isinstance(frame, Audio):
                    assert frame.sample_rate == 16000
                    heard += len(frame.pcm)
                if isinstance(frame, Usage):
                    break
            off()
            seen = len(everything)
            await rt.commit()  # a second reply, after unsubscribing
            async for frame in rt:
                if isinstance(frame, Usage):
                    break
            await rt.close(4000, "bye")
            await rt.close()  # idempotent
        assert heard > 0 and {"audio", "Transcript", "Usage"} <= set(everything)
        assert len(everything) == seen  # unsubscribed: nothing more arrived
        assert (rt.close_code, rt.close_reason) == (4000, "bye")
        # the client's close handshake completes as soon as the server echoes it; the record
        # is written a few ms later (the provider socket is closed first): wait for it
        for _ in range(100):
            record = await speko.get_session(rt.session_id)
            if record.status != "active":
                break
            await asyncio.sleep(0.02)
        # the bridge saw our code; the record keeps it as the client's word (a normal end
        # whose reason quotes it), so no client can write a server code into its record
        assert (record.status, record.close_code) == ("ended", 1000) and "4000" in record.close_reason


async def test_connect_takes_the_mint_answer_and_refuses_a_used_token(gemini_bridge, http):
    async with http.post(f"{gemini_bridge.base}/v1/sessions", json={"provider": "google", "model": MODEL},
                         headers={"Authorization": f"Bearer {API_KEY}"}) as r:
        answer = await r.json()  # the JSON as a backend would pass it on
    async with connect(answer) as rt:
        assert rt.session_id == answer["sessionId"]
        await rt.commit()
        assert any([isinstance(f, Transcript) async for f in _until_usage(rt)])
    started = time.monotonic()
    with pytest.raises(SpekoError) as err:
        async with connect(answer):
            pass
    assert (err.value.code, err.value.close_code) == ("token_used", 4001)
    assert time.monotonic() - started < 2  # refused at once, not after a timeout
    with pytest.raises(SpekoError) as err:
        connect({"token": "x"})  # not a mint answer: refused before anything is sent
    assert (err.value.status, err.value.code) == (422, "invalid_request")


async def test_connect_timeout_bounds_a_server_that_never_answers():
    silent: list[asyncio.StreamWriter] = []

    async def hold(reader, writer):  # accepts TCP, never answers the upgrade
        silent.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    started = time.monotonic()
    try:
        with pytest.raises(SpekoError) as err:
            async with connect(f"ws://127.0.0.1:{port}/v1/realtime", "token", connect_timeout=0.5):
                pass
    finally:
        for writer in silent:
            writer.close()
        server.close()
        await server.wait_closed()
    assert err.value.code == "timeout"
    assert 0.4 < time.monotonic() - started < 2


async def test_close_handlers_hear_a_connection_that_drops(tmp_path):
    bridge = BridgeProcess("drop", {"SPEKO_API_KEYS": API_KEY, "SPEKO_SIGNING_KEY": SIGNING_KEY,
                                    "SPEKO_SIMULATE": "1", "SPEKO_LOG_FORMAT": "text"}, tmp_path)
    await bridge.start()
    closes: list[Close] = []
    try:
        async with Speko(bridge.base, API_KEY) as speko:
            async with speko.realtime.connect(provider="openai", model="gpt-realtime") as rt:
                rt.on("close", closes.append)
                bridge.proc.kill()  # no close handshake: the TCP connection just ends
                bridge.proc.wait()
                frames = [f async for f in rt]
    finally:
        await bridge.stop()
    assert [(c.code, c.reason) for c in closes] == [(1006, "connection closed without a close frame")]
    assert isinstance(frames[-1], Close) and rt.close_code == 1006


async def _until_usage(rt):
    async for frame in rt:
        yield frame
        if isinstance(frame, Usage):
            return


def test_a_mint_answer_passed_on_as_json_loses_nothing():
    """The v2 mint answer a backend passes on as JSON becomes a Session with its rates."""
    from speko_bridge.client import Session

    answer = {"sessionId": "sess_1", "token": "t", "expiresAt": "2026-01-01T00:00:00Z", "url": "ws://x/v1/realtime",
              "ttlSeconds": 600, "provider": "xai", "model": "grok-voice-latest", "inputSampleRate": 16000,
              "outputSampleRate": 24000, "turnDetection": {"type": "manual"}}
    session = Session.from_answer(json.loads(json.dumps(answer)))
    assert (session.provider, session.input_sample_rate, session.output_sample_rate) == ("xai", 16000, 24000)
