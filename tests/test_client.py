"""The Python SDK against a real server: mint, read, revoke over HTTP; a conversation over
the real socket through the Gemini simulator; handlers, iteration and close semantics."""

from __future__ import annotations

import pytest

from speko_bridge.client import SpekoClient, SpekoError, connect
from speko_bridge.frames import Audio, Close, Error, ToolCall, Transcript, Usage
from speko_bridge.params import ToolSpec

from .conftest import API_KEY
from .wsclient import WEATHER_TOOL, tone


@pytest.fixture
async def speko(gemini_bridge):
    async with SpekoClient(gemini_bridge.base, API_KEY) as client:
        yield client


async def test_mint_read_revoke_and_errors(speko):
    session = await speko.create_session(provider="google", model="gemini-2.5-flash-native-audio-preview-12-2025",
                                         tools=[ToolSpec(name="get_weather")], metadata={"user": 7},
                                         output_sample_rate=16000)
    assert session.url.endswith(f"/v1/realtime?session={session.session_id}") and session.token and session.output_sample_rate == 16000
    view = await speko.get_session(session.session_id)
    assert (view.status, view.provider, view.metadata) == ("pending", "google", {"user": 7})
    assert (await speko.revoke_session(session.session_id)).status == "revoked"
    with pytest.raises(SpekoError) as err:
        await speko.get_session("sess_nope")
    assert (err.value.status, err.value.code) == (404, "not_found")
    with pytest.raises(SpekoError) as err:  # refused by the server: the message names the field
        await speko.create_session(provider="openai", model="gpt-realtime")
    assert err.value.status == 422 and "provider" in err.value.message
    with pytest.raises(SpekoError) as err:  # refused before sending, as the server would
        await speko.create_session(provider="google", model="m", temperature=3)
    assert (err.value.status, err.value.code) == (422, "invalid_request")
    assert "`$.temperature`" in err.value.message
    async with SpekoClient(speko.base_url, "wrong-key") as other:
        with pytest.raises(SpekoError) as err:
            await other.create_session(provider="google", model="m")
    assert (err.value.status, err.value.code) == (401, "invalid_api_key")


async def test_conversation_with_tool_call_handlers_and_clean_close(speko):
    session = await speko.create_session(provider="google", model="gemini-2.5-flash-native-audio-preview-12-2025",
                                         input_sample_rate=16000, output_sample_rate=16000,
                                         tools=[WEATHER_TOOL])
    transcripts: list[Transcript] = []
    everything: list[str] = []
    async with speko.connect(session) as rt:
        unsubscribe = rt.on("transcript", transcripts.append)

        async def answer(call: ToolCall) -> None:  # async handlers are awaited
            await rt.send_tool_result(call.call_id, {"temp_c": 21})

        rt.on("tool_call", answer)
        rt.on("*", lambda f: everything.append(f.type if isinstance(f, Audio) else type(f).__name__))
        await rt.send_audio(tone(1.0, 16000))
        await rt.commit()
        audio = 0
        usages = 0
        async for frame in rt:
            if isinstance(frame, Audio):
                assert frame.sample_rate == 16000
                audio += len(frame.pcm)
            elif isinstance(frame, Usage):
                usages += 1
                if usages == 2:
                    break
        unsubscribe()
        await rt.send_audio(tone(0.3, 16000))
        await rt.commit()
        async for frame in rt:
            if isinstance(frame, Usage):
                break
        await rt.close()
        await rt.close()  # idempotent
        assert rt.close_code == 1000
    assert audio == 16000 * 2 // 2  # 500 ms reply heard at 16 kHz
    finals = [t.text for t in transcripts if t.final]
    assert finals == ["I spoke for 1.0 seconds.", 'The tool said: {"temp_c":21}']  # not the 3rd turn
    assert "ToolCall" in everything and "audio" in everything
    view = await speko.get_session(session.session_id)
    assert view.status == "ended" and view.close_code == 1000 and view.usage.output_audio_tokens > 0


async def test_server_side_ends_are_reported(speko):
    session = await speko.create_session(provider="google", model="gemini-2.5-flash-native-audio-preview-12-2025")
    async with speko.connect(session) as rt:
        await rt.commit()
        async for frame in rt:
            if isinstance(frame, Usage):
                break
        await speko.revoke_session(session.session_id)
        frames = [f async for f in rt]  # iteration ends after the close frame
    assert isinstance(frames[-1], Close) and frames[-1].code == 4004
    assert any(isinstance(f, Error) and f.code == "session_revoked" for f in frames)
    assert (rt.close_code, rt.close_reason) == (4004, frames[-1].reason)
    with pytest.raises(SpekoError):
        await rt.commit()  # closed: a clear error, not a hang

    # the revoked token, from url + token alone: connect refuses it (it does not open and
    # leave the failure to arrive later as frames)
    with pytest.raises(SpekoError) as err:
        async with connect(session.url, session.token):
            pass
    assert (err.value.code, err.value.close_code, err.value.status) == ("session_revoked", 4001, 0)


async def test_on_rejects_unknown_types_and_a_failing_handler_does_not_end_the_session(speko):
    session = await speko.create_session(provider="google", model="gemini-2.5-flash-native-audio-preview-12-2025")
    async with speko.connect(session) as rt:
        with pytest.raises(ValueError):
            rt.on("transcripts", print)
        rt.on("transcript", lambda f: 1 / 0)
        await rt.commit()
        got = [f async for f in _until_usage(rt)]
    assert any(isinstance(f, Transcript) for f in got)
    assert rt.close_code == 1000


async def _until_usage(rt):
    async for frame in rt:
        yield frame
        if isinstance(frame, Usage):
            return

