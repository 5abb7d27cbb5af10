"""The OpenAI simulator speaks the real GA protocol (providers.md section 2) over a real socket."""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import pytest

from speko_bridge.simulator.openai import OpenAISimConfig, OpenAISimulator


@pytest.fixture
async def sim():
    s = OpenAISimulator(OpenAISimConfig(reply_ms=300))
    await s.start()
    yield s
    await s.stop()


async def events_until(ws, kind: str, timeout=5.0) -> list[dict]:
    got = []
    async with asyncio.timeout(timeout):
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                got.append(json.loads(msg.data))
                if got[-1]["type"] == kind:
                    return got
    return got


def connect(http, sim, key="sk-sim", **kw):
    return http.ws_connect(sim.url + "?model=gpt-realtime", headers={"Authorization": f"Bearer {key}"}, **kw)


async def manual_turn(ws) -> list[dict]:
    """Manual turns with transcription, one second of audio committed and answered: every
    event up to ``response.done``."""
    await ws.send_str(json.dumps({"type": "session.update", "session": {
        "type": "realtime", "audio": {"input": {"turn_detection": None,
                                                "transcription": {"model": "gpt-4o-mini-transcribe"}}}}}))
    await events_until(ws, "session.updated")
    await ws.send_str(json.dumps({"type": "input_audio_buffer.append",
                                  "audio": base64.b64encode(b"\0\0" * 24000).decode()}))
    await ws.send_str('{"type":"input_audio_buffer.commit"}')
    await ws.send_str('{"type":"response.create"}')
    return await events_until(ws, "response.done")


async def test_turn_sequence_matches_ga_order(http, sim):
    async with connect(http, sim) as ws:
        assert (await events_until(ws, "session.created"))[-1]["session"]["type"] == "realtime"
        events = await manual_turn(ws)
    types = [e["type"] for e in events]
    assert types[:5] == ["input_audio_buffer.committed", "conversation.item.added", "conversation.item.done",
                         "conversation.item.input_audio_transcription.delta",
                         "conversation.item.input_audio_transcription.delta"]
    r = types.index("response.created")
    assert types[r + 1:r + 5] == ["rate_limits.updated", "response.output_item.added",
                                  "conversation.item.added", "response.content_part.added"]
    assert types[-6:] == ["response.output_audio.done", "response.output_audio_transcript.done",
                          "response.content_part.done", "response.output_item.done",
                          "conversation.item.done", "response.done"]
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta")
    done = next(e for e in events if e["type"] == "response.output_audio_transcript.done")
    assert deltas == done["transcript"] == "You spoke for 1.0 seconds."
    audio = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")
    assert len(audio) == 300 * 48  # reply_ms at 24 kHz PCM16
    usage = events[-1]["response"]["usage"]
    assert usage["input_token_details"]["audio_tokens"] == 10 and usage["output_token_details"]["audio_tokens"] == 6
    assert all(e["event_id"].startswith("event_") for e in events)
    assert sim.violations == []


async def test_errors_are_shaped_like_openai_and_socket_stays_open(http, sim):
    async with connect(http, sim) as ws:
        await events_until(ws, "session.created")
        await ws.send_str('{"type":"input_audio_buffer.append","data":"AAAA"}')  # wrong field name
        (err,) = await events_until(ws, "error")
        assert err["error"]["type"] == "invalid_request_error" and set(err["error"]) >= {"code", "message", "param", "event_id"}
        await ws.send_str("{nope")
        assert (await events_until(ws, "error"))[-1]["error"]["code"] == "invalid_json"
        await ws.send_str('{"type":"input_audio_buffer.commit"}')
        assert (await events_until(ws, "error"))[-1]["error"]["code"] == "input_audio_buffer_commit_empty"
        await ws.send_str('{"type":"response.cancel"}')
        assert (await events_until(ws, "error"))[-1]["error"]["code"] == "response_cancel_not_active"
        await ws.send_str('{"type":"conversation.item.truncate","item_id":"item_9","content_index":0,"audio_end_ms":10}')
        assert (await events_until(ws, "error"))[-1]["error"]["param"] == "item_id"
        assert not ws.closed
    assert len(sim.violations) == 1 and sim.violations[0].startswith("input_audio_buffer.append")


@pytest.mark.parametrize("mode,status", [("401", 401), ("403", 403)])
async def test_bad_key_refused_at_upgrade(http, sim, mode, status):
    sim.config.bad_key = mode
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        async with connect(http, sim, key="sk-wrong"):
            pass
    assert err.value.status == status and sim.connections == 0


async def test_bad_key_error_then_close_3000(http, sim):
    sim.config.bad_key = "error_close"
    async with connect(http, sim, key="sk-wrong") as ws:
        events = await events_until(ws, "never")
        assert events[0]["error"]["code"] == "invalid_api_key"
        assert ws.close_code == 3000


async def test_refuse_status_and_browser_subprotocol(http, sim):
    async with http.ws_connect(sim.url, protocols=["realtime", "openai-insecure-api-key.sk-sim"]) as ws:
        assert ws.protocol == "realtime"
    sim.config.refuse_status = 429
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        async with connect(http, sim):
            pass
    assert err.value.status == 429


async def test_echo_and_session_expiry(http, sim):
    sim.config.echo = True
    sim.config.session_max_seconds = 0.3
    async with connect(http, sim) as ws:
        await events_until(ws, "session.created")
        await ws.send_str('{"type":"input_audio_buffer.append","audio":"AQID"}')
        (delta,) = await events_until(ws, "response.output_audio.delta")
        assert delta["delta"] == "AQID"
        err = await events_until(ws, "error")
        assert err[-1]["error"]["code"] == "session_expired"
        await events_until(ws, "never")
        assert ws.closed


async def test_retrieve_shows_the_item_as_the_conversation_left_it(http, sim):
    """conversation.item.retrieve (the Agents SDK sends it after each transcription and
    truncate): the item with the user's transcript in it, a truncated reply without its
    transcript, every answer a valid RealtimeServerEvent; an unknown id is an error."""
    import pydantic
    from openai.types.realtime import RealtimeServerEvent

    adapter = pydantic.TypeAdapter(RealtimeServerEvent)
    async with connect(http, sim) as ws:
        await events_until(ws, "session.created")
        events = await manual_turn(ws)
        user = next(e["item_id"] for e in events if e["type"] == "input_audio_buffer.committed")
        reply = events[-1]["response"]["output"][0]["id"]
        answers = []
        for item_id in (user, reply):
            await ws.send_str(json.dumps({"type": "conversation.item.retrieve", "item_id": item_id}))
            answers.append((await events_until(ws, "conversation.item.retrieved"))[-1])
        await ws.send_str(json.dumps({"type": "conversation.item.truncate", "item_id": reply,
                                      "content_index": 0, "audio_end_ms": 100}))
        await events_until(ws, "conversation.item.truncated")
        await ws.send_str(json.dumps({"type": "conversation.item.retrieve", "item_id": reply}))
        answers.append((await events_until(ws, "conversation.item.retrieved"))[-1])
        await ws.send_str(json.dumps({"type": "conversation.item.retrieve", "item_id": "item_nope", "event_id": "e1"}))
        missing = (await events_until(ws, "error"))[-1]
    for answer in answers:
        adapter.validate_python(answer)
    assert answers[0]["item"]["role"] == "user"
    assert answers[0]["item"]["content"][0]["transcript"] == "I spoke for 1.0 seconds."
    assert answers[1]["item"]["content"][0]["transcript"] == "You spoke for 1.0 seconds."
    assert answers[2]["item"]["id"] == reply and answers[2]["item"]["content"][0]["transcript"] == ""
    assert missing["error"]["param"] == "item_id" and missing["error"]["event_id"] == "e1"
