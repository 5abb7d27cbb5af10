"""Settings come from the environment and a bad value is one clear line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from speko_bridge.config import ConfigError, load_settings


def test_dev_mode_generates_keys_once(tmp_path):
    env = {"SPEKO_DEV": "1", "SPEKO_DATA_DIR": str(tmp_path)}
    first = load_settings(env)
    second = load_settings(env)
    assert first.dev_api_key and first.dev_api_key == second.dev_api_key
    assert first.signing.current_kid == second.signing.current_kid
    assert oct((tmp_path / "signing_key").stat().st_mode & 0o777) == "0o600"
    assert first.simulate is True
    assert first.realtime_url == "ws://127.0.0.1:8000/v1/realtime"


@pytest.mark.parametrize(
    "env,variable",
    [
        ({}, "SPEKO_API_KEYS"),
        ({"SPEKO_API_KEYS": "k" * 20}, "SPEKO_SIGNING_KEY"),
        ({"SPEKO_API_KEYS": "k" * 20, "SPEKO_SIGNING_KEY": "short"}, "SPEKO_SIGNING_KEY"),
        ({"SPEKO_DEV": "maybe"}, "SPEKO_DEV"),
        ({"SPEKO_DEV": "1", "SPEKO_API_KEYS": "tiny"}, "SPEKO_API_KEYS"),
        ({"SPEKO_DEV": "1", "SPEKO_PUBLIC_URL": "ftp://x"}, "SPEKO_PUBLIC_URL"),
        ({"SPEKO_DEV": "1", "SPEKO_OPENAI_URL": "http://x"}, "SPEKO_OPENAI_URL"),
        ({"SPEKO_DEV": "1", "SPEKO_TOKEN_WINDOW_SECONDS": "abc"}, "SPEKO_TOKEN_WINDOW_SECONDS"),
        ({"SPEKO_DEV": "1", "SPEKO_MAX_SESSIONS": "0"}, "SPEKO_MAX_SESSIONS"),
        ({"SPEKO_DEV": "1", "SPEKO_REDIS_URL": "http://redis:6379"}, "SPEKO_REDIS_URL"),
        ({"SPEKO_DEV": "1", "SPEKO_LOG_FORMAT": "xml"}, "SPEKO_LOG_FORMAT"),
        ({"SPEKO_DEV": "1", "SPEKO_DRAIN_SECONDS": "-1"}, "SPEKO_DRAIN_SECONDS"),
        ({"SPEKO_DEV": "1", "SPEKO_MINT_RATE_PER_MINUTE": "lots"}, "SPEKO_MINT_RATE_PER_MINUTE"),
        ({"SPEKO_DEV": "1", "SPEKO_MAX_SESSIONS_PER_KEY": "-3"}, "SPEKO_MAX_SESSIONS_PER_KEY"),
    ],
)
def test_bad_values_name_the_variable(tmp_path, env, variable):
    with pytest.raises(ConfigError) as err:
        load_settings({"SPEKO_DATA_DIR": str(tmp_path), **env})
    assert err.value.variable == variable
    assert str(err.value).startswith(variable + ": ")


def test_public_url_becomes_wss(tmp_path):
    s = load_settings({"SPEKO_DEV": "1", "SPEKO_DATA_DIR": str(tmp_path),
                       "SPEKO_PUBLIC_URL": "https://voice.example.com"})
    assert s.realtime_url == "wss://voice.example.com/v1/realtime"


def test_cli_exits_with_one_line_on_bad_config(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPEKO_")}
    env.update({"SPEKO_DEV": "1", "SPEKO_DATA_DIR": str(tmp_path), "SPEKO_MAX_SESSIONS": "lots"})
    proc = subprocess.run([sys.executable, "-m", "speko_bridge", "serve", "--port", "0"],
                          env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["speko-bridge: configuration error: SPEKO_MAX_SESSIONS: expected an integer, got 'lots'"]
