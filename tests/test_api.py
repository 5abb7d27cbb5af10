"""``/v1/sessions`` and friends over real HTTP against a real uvicorn server and SQLite file."""

from __future__ import annotations

import json
import sqlite3
import time

import jwt
import pytest

from speko_bridge.api import MAX_BODY_BYTES

from .conftest import API_KEY, OTHER_KEY, SIGNING_KEY, auth, run_bridge

BODY = {"provider": "openai", "model": "gpt-realtime"}


@pytest.fixture
async def bridge(env):
    env = {**env, "OPENAI_API_KEY": "sk-test", "SPEKO_PUBLIC_URL": "https://voice.example.com"}
    async with run_bridge(env) as server:
        yield server


async def mint(http, bridge, body=None, key=API_KEY):
    async with http.post(f"{bridge.base}/v1/sessions", json=body or BODY, headers=auth(key)) as r:
        return r.status, await r.json()


async def test_mint_returns_a_token_whose_claims_decode_as_documented(http, bridge):
    async with http.post(f"{bridge.base}/v1/sessions", headers=auth(),
                         json={**BODY, "ttlSeconds": 5000, "metadata": {"user": 7}}) as r:
        status, body = r.status, await r.json()
        # the answer carries a bearer token: no browser, proxy or CDN may keep a copy
        assert r.headers.get("Cache-Control") == "no-store"
    assert status == 201
    assert set(body) == {"sessionId", "token", "expiresAt", "url", "ttlSeconds", "provider", "model",
                         "inputSampleRate", "outputSampleRate", "turnDetection"}
    # protocol v2: the effective settings, defaults filled in
    assert (body["provider"], body["model"]) == (BODY["provider"], BODY["model"])
    assert (body["inputSampleRate"], body["outputSampleRate"]) == (24000, 24000)
    assert body["turnDetection"] == {"type": "manual"}
    _, other = await mint(http, bridge, {**BODY, "inputSampleRate": 16000, "outputSampleRate": 16000})
    assert (other["inputSampleRate"], other["outputSampleRate"]) == (16000, 16000)
    # v2: the session id rides in the url, for load balancers that route resumes by it
    assert body["url"] == f"wss://voice.example.com/v1/realtime?session={body['sessionId']}"
    assert body["ttlSeconds"] == 1800  # capped, not refused
    claims = jwt.decode(body["token"], SIGNING_KEY, algorithms=["HS256"], audience="speko-bridge/realtime",
                        issuer="speko-bridge")
    assert claims["sub"] == body["sessionId"]
    assert claims["exp"] - claims["iat"] == 60
    assert body["expiresAt"].endswith("Z")
    # no secret in the token
    assert "sk-test" not in json.dumps(claims) and API_KEY not in json.dumps(claims)


async def test_get_and_revoke_are_owner_only(http, bridge):
    _, created = await mint(http, bridge, {**BODY, "metadata": {"order": "A1"}})
    sid = created["sessionId"]
    url = f"{bridge.base}/v1/sessions/{sid}"
    async with http.get(url, headers=auth()) as r:
        record = await r.json()
        assert r.status == 200
    assert record["status"] == "pending" and record["metadata"] == {"order": "A1"}
    assert record["usage"] == {"inputAudioTokens": 0, "outputAudioTokens": 0}
    for method in ("GET", "DELETE"):
        async with http.request(method, url, headers=auth(OTHER_KEY)) as r:
            assert r.status == 404  # same answer as a missing id: ids cannot be probed
            assert (await r.json())["error"]["code"] == "not_found"
    # and the foreign DELETE changed nothing: the owner's session is still waiting for its socket
    async with http.get(url, headers=auth()) as r:
        assert (await r.json())["status"] == "pending"
    for _ in range(2):  # repeat revokes are fine
        async with http.delete(url, headers=auth()) as r:
            assert r.status == 200 and (await r.json())["status"] == "revoked"
    async with http.get(f"{bridge.base}/v1/sessions/sess_nope", headers=auth()) as r:
        assert r.status == 404


async def test_pending_session_shows_expired_after_its_window(http, env):
    async with run_bridge({**env, "OPENAI_API_KEY": "k", "SPEKO_TOKEN_WINDOW_SECONDS": "5"}) as b:
        _, created = await mint(http, b)
        conn = sqlite3.connect(env["SPEKO_DB_PATH"])
        conn.execute("UPDATE sessions SET token_expires_at = ? WHERE session_id = ?",
                     (time.time() - 1, created["sessionId"]))
        conn.commit()
        conn.close()
        async with http.get(f"{b.base}/v1/sessions/{created['sessionId']}", headers=auth()) as r:
            assert (await r.json())["status"] == "expired"


async def test_integral_floats_count_as_integers(http, bridge):
    # JSON Schema's "integer" includes 600.0, and Python's json.dumps writes floats that way
    status, body = await mint(http, bridge, {**BODY, "ttlSeconds": 600.0, "inputSampleRate": 16000.0})
    assert status == 201 and body["ttlSeconds"] == 600
    status, body = await mint(http, bridge, {**BODY, "ttlSeconds": 600.5, "inputSampleRate": 16000.0})
    assert status == 422 and "ttlSeconds" in body["error"]["message"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}],
)
async def test_bad_api_key_is_401(http, bridge, headers):
    async with http.post(f"{bridge.base}/v1/sessions", json=BODY, headers=headers) as r:
        body = await r.json()
        assert r.status == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert body["error"]["code"] == "invalid_api_key" and body["error"]["message"]


async def test_wrong_content_type_is_415(http, bridge):
    async with http.post(f"{bridge.base}/v1/sessions", data=json.dumps(BODY),
                         headers={**auth(), "Content-Type": "text/plain"}) as r:
        assert r.status == 415 and (await r.json())["error"]["code"] == "unsupported_media_type"


async def test_body_over_64k_is_413_declared_or_streamed(http, bridge):
    big = json.dumps({**BODY, "metadata": {"x": "y" * MAX_BODY_BYTES}})
    async with http.post(f"{bridge.base}/v1/sessions", data=big,
                         headers={**auth(), "Content-Type": "application/json"}) as r:
        assert r.status == 413
    async def chunks():  # no Content-Length: chunked transfer
        for _ in range(80):
            yield b" " * 1024
    async with http.post(f"{bridge.base}/v1/sessions", data=chunks(),
                         headers={**auth(), "Content-Type": "application/json"}) as r:
        assert r.status == 413 and (await r.json())["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    "body,status,field",
    [
        ("not json", 400, None),
        ("[", 400, None),  # an array begun: the typed decoder stops at once, the rest is not JSON
        ('{"provider": "openai", "model": "m", "ttlSeconds": 60.0', 400, None),
        ([1, 2], 422, None),
        ({"model": "gpt-realtime"}, 422, "provider"),
        ({"provider": "acme", "model": "m"}, 422, "provider"),
        ({**BODY, "model": ""}, 422, "model"),
        ({**BODY, "model": "m" * 129}, 422, "model"),
        ({**BODY, "inputSampleRate": 44100}, 422, "inputSampleRate"),
        ({**BODY, "outputSampleRate": "24000"}, 422, "outputSampleRate"),
        ({**BODY, "temperature": 2.5}, 422, "temperature"),
        ({**BODY, "temperature": -0.1}, 422, "temperature"),
        ({**BODY, "ttlSeconds": 0}, 422, "ttlSeconds"),
        ({**BODY, "ttlSeconds": 1.5}, 422, "ttlSeconds"),
        ({**BODY, "tools": [{"name": f"t{i}"} for i in range(65)]}, 422, "tools"),
        ({**BODY, "tools": [{"name": "a b"}]}, 422, "tools[0].name"),
        ({**BODY, "tools": [{"name": "a"}, {"name": "a"}]}, 422, "tools[1].name"),
        ({**BODY, "tools": [{"name": "a", "parameters": {"type": "string"}}]}, 422, "tools[0].parameters"),
        ({**BODY, "metadata": {"k": "v" * 17000}}, 422, "metadata"),
        ({**BODY, "systemPrompt": "é" * 17000}, 422, "systemPrompt"),  # 34000 bytes, 17000 chars
        ({**BODY, "colour": "red"}, 422, "colour"),
        ({**BODY, "tools": [{"description": "no name"}]}, 422, "tools[0].name"),
        ({"provider": "google", "model": "gemini-2.5-flash-native-audio-preview-12-2025"}, 422, "provider"),
    ],
)
async def test_bad_bodies_name_the_field(http, bridge, body, status, field):
    data = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False).encode()
    async with http.post(f"{bridge.base}/v1/sessions", data=data,
                         headers={**auth(), "Content-Type": "application/json"}) as r:
        answer = await r.json()
        assert r.status == status, answer
    assert set(answer) == {"error"} and set(answer["error"]) == {"code", "message"}
    if field:  # the README's promise: the field named as `$.field`
        assert f"`$.{field}`" in answer["error"]["message"], answer
    assert "Traceback" not in answer["error"]["message"]


async def test_store_down_gives_503_and_no_token(http, env):
    async with run_bridge({**env, "OPENAI_API_KEY": "k", "SPEKO_DB_BUSY_TIMEOUT_MS": "100"}) as b:
        blocker = sqlite3.connect(env["SPEKO_DB_PATH"], isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            status, body = await mint(http, b)
            assert status == 503 and "token" not in body
            assert body["error"]["code"] == "store_unavailable"
            async with http.get(f"{b.base}/readyz") as r:
                assert r.status == 503
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert (await mint(http, b))[0] == 201
        async with http.get(f"{b.base}/readyz") as r:
            assert r.status == 200


async def test_health_and_unknown_routes(http, bridge):
    async with http.get(f"{bridge.base}/healthz") as r:
        assert r.status == 200 and (await r.json()) == {"status": "ok"}
    async with http.get(f"{bridge.base}/readyz") as r:
        assert r.status == 200
    async with http.get(f"{bridge.base}/nope") as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    async with http.put(f"{bridge.base}/v1/sessions", headers=auth()) as r:
        assert r.status == 405 and (await r.json())["error"]["code"] == "method_not_allowed"


async def test_tokens_survive_a_restart_in_dev_mode(http, tmp_path):
    env = {"SPEKO_DEV": "1", "SPEKO_DATA_DIR": str(tmp_path / "d"), "OPENAI_API_KEY": "k"}
    async with run_bridge(env) as b:
        key = b.app.state.settings.dev_api_key
        status, created = await mint(http, b, key=key)
        assert status == 201
    async with run_bridge(env) as b2:
        assert b2.app.state.settings.dev_api_key == key
        async with http.get(f"{b2.base}/v1/sessions/{created['sessionId']}", headers=auth(key)) as r:
            assert r.status == 200
