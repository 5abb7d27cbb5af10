"""``turnDetection`` at mint (protocol v2), over real HTTP against a real server: each mode is
accepted with its own fields and echoed in the answer, a field of another mode or a value
out of bounds is a 422 naming it, and ``semantic`` is refused where the provider lacks it."""

from __future__ import annotations

import pytest

from speko_bridge.client import SpekoClient

from .conftest import API_KEY, auth, run_bridge

ALL_PROVIDERS = {"OPENAI_API_KEY": "sk-test", "GOOGLE_API_KEY": "g-test", "XAI_API_KEY": "xai-test"}
MODELS = {"openai": "gpt-realtime", "google": "gemini-2.5-flash-native-audio-preview-12-2025", "xai": "grok-voice-latest"}


@pytest.fixture
async def bridge(env):
    async with run_bridge({**env, **ALL_PROVIDERS}) as server:
        yield server


async def mint(http, bridge, provider, turn):
    body = {"provider": provider, "model": MODELS[provider]}
    if turn is not None:
        body["turnDetection"] = turn
    async with http.post(f"{bridge.base}/v1/sessions", json=body, headers=auth()) as r:
        return r.status, await r.json()


@pytest.mark.parametrize("provider", ["openai", "google", "xai"])
async def test_each_mode_is_echoed_as_the_effective_value(http, bridge, provider):
    assert (await mint(http, bridge, provider, None))[1]["turnDetection"] == {"type": "manual"}
    assert (await mint(http, bridge, provider, {"type": "manual"}))[1]["turnDetection"] == {"type": "manual"}
    server = {"type": "server", "silenceMs": 400, "prefixMs": 200, "sensitivity": "high"}
    status, body = await mint(http, bridge, provider, server)
    assert status == 201 and body["turnDetection"] == server
    status, body = await mint(http, bridge, provider, {"type": "server"})
    assert status == 201 and body["turnDetection"] == {"type": "server"}  # provider defaults


async def test_semantic_is_offered_by_openai_only(http, bridge):
    status, body = await mint(http, bridge, "openai", {"type": "semantic", "eagerness": "low"})
    assert status == 201 and body["turnDetection"] == {"type": "semantic", "eagerness": "low"}
    for provider in ("google", "xai"):
        status, body = await mint(http, bridge, provider, {"type": "semantic"})
        assert status == 422 and body["error"]["code"] == "invalid_request"
        assert "`$.turnDetection.type`" in body["error"]["message"]


@pytest.mark.parametrize("turn, field", [
    ({"type": "server", "silenceMs": 99}, "$.turnDetection.silenceMs"),
    ({"type": "server", "silenceMs": 5001}, "$.turnDetection.silenceMs"),
    ({"type": "server", "prefixMs": -1}, "$.turnDetection.prefixMs"),
    ({"type": "server", "prefixMs": 2001}, "$.turnDetection.prefixMs"),
    ({"type": "server", "sensitivity": "max"}, "$.turnDetection.sensitivity"),
    ({"type": "server", "eagerness": "low"}, "$.turnDetection.eagerness"),
    ({"type": "manual", "silenceMs": 500}, "$.turnDetection.silenceMs"),
    ({"type": "semantic", "sensitivity": "low"}, "$.turnDetection.sensitivity"),
    ({"type": "semantic", "eagerness": "never"}, "$.turnDetection.eagerness"),
    ({"type": "vad"}, "$.turnDetection.type"),
    ({}, "$.turnDetection.type"),
    ({"type": "server", "threshold": 0.5}, "$.turnDetection.threshold"),
    ("server", "$.turnDetection"),
])
async def test_bad_turn_detection_is_a_422_naming_the_field(http, bridge, turn, field):
    status, body = await mint(http, bridge, "openai", turn)
    assert status == 422, body
    assert f"`{field}`" in body["error"]["message"]


async def test_python_sdk_mints_with_turn_detection(bridge):
    async with SpekoClient(bridge.base, API_KEY) as client:
        session = await client.create_session(provider="google", model=MODELS["google"],
                                              turn_detection={"type": "server", "silenceMs": 300})
    assert session.turn_detection == {"type": "server", "silenceMs": 300}
