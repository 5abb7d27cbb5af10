"""The model catalogue (issue 19, item 1): a mint naming a model its provider does not serve
is refused with 422 naming ``$.model`` before a token is spent; the operator can replace a
provider's list or allow any id; the defaults match what the providers document."""

from __future__ import annotations

import typing

import pytest

from speko_bridge.config import ConfigError, load_settings
from speko_bridge.models import KNOWN_MODELS, default_model

from .conftest import auth, run_bridge
from .wsclient import MODELS

KEYS = {"OPENAI_API_KEY": "sk-test", "GOOGLE_API_KEY": "g-test", "XAI_API_KEY": "x-test"}


async def mint(http, bridge, provider: str, model: str):
    async with http.post(f"{bridge.base}/v1/sessions", json={"provider": provider, "model": model},
                         headers=auth()) as r:
        return r.status, await r.json()


@pytest.fixture
async def bridge(env):
    async with run_bridge({**env, **KEYS}) as server:
        yield server


@pytest.mark.parametrize("provider,model", [
    ("google", "gemini-2.5-flash-native-audio"),  # the Vertex-style id the README used to show
    ("google", "gemini-2.0-flash-live-001"),  # shut down
    ("openai", "gpt-4o-realtime"),
    ("xai", "grok-4"),
])
async def test_an_unknown_model_is_refused_at_mint_naming_the_field(http, bridge, provider, model):
    status, body = await mint(http, bridge, provider, model)
    assert status == 422
    assert body["error"]["code"] == "invalid_request"
    message = body["error"]["message"]
    assert message.endswith("- at `$.model`") and repr(model) in message
    assert f"SPEKO_MODELS_{provider.upper()}" in message  # says how to allow it
    assert default_model(provider) in message  # and which ones are known


@pytest.mark.parametrize("provider", ["openai", "google", "xai"])
async def test_every_known_model_and_the_examples_mint(http, bridge, provider):
    for model in {*KNOWN_MODELS[provider], MODELS[provider]}:
        status, body = await mint(http, bridge, provider, model)
        assert status == 201, (model, body)
    if provider == "google":  # Gemini's own spelling with the resource prefix
        assert (await mint(http, bridge, "google", "models/" + default_model("google")))[0] == 201


async def test_the_operator_replaces_a_list_or_allows_any(http, env):
    extra = {"SPEKO_MODELS_OPENAI": "my-finetune, gpt-realtime", "SPEKO_MODELS_GOOGLE": "*"}
    async with run_bridge({**env, **KEYS, **extra}) as bridge:
        assert (await mint(http, bridge, "openai", "my-finetune"))[0] == 201
        assert (await mint(http, bridge, "openai", "gpt-realtime-mini"))[0] == 422  # replaced, not added to
        assert (await mint(http, bridge, "google", "gemini-9-live-tomorrow"))[0] == 201
        assert (await mint(http, bridge, "xai", "grok-4"))[0] == 422  # untouched default


@pytest.mark.parametrize("value", ["*,gpt-realtime", "gpt realtime", "m" * 129])
def test_a_bad_model_list_stops_the_server_naming_the_variable(env, value):
    with pytest.raises(ConfigError) as err:
        load_settings({**env, "SPEKO_MODELS_OPENAI": value})
    assert err.value.variable == "SPEKO_MODELS_OPENAI"


def test_the_openai_list_is_the_sdks_model_literal():
    from openai.types.realtime.realtime_session_create_request_param import (
        RealtimeSessionCreateRequestParam,
    )

    hint = typing.get_type_hints(RealtimeSessionCreateRequestParam)["model"]
    (literal,) = [a for a in typing.get_args(hint) if typing.get_origin(a) is typing.Literal]
    assert set(KNOWN_MODELS["openai"]) == set(typing.get_args(literal))
