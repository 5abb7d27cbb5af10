"""Issue 24, the findings outside the live session, over real HTTP to a real server:
the dev mint against DNS rebinding (8), deeply nested JSON in REST bodies (9), and storage
and logs (10: retention, default mint rate, file modes, tokens kept out of access logs)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import time
from pathlib import Path

import aiohttp
import pytest

from speko_bridge.app import create_app
from speko_bridge.config import DEFAULT_MINT_RATE_PER_MINUTE, load_settings
from speko_bridge.jsondepth import MAX_JSON_DEPTH
from speko_bridge.params import SessionParams
from speko_bridge.store import SessionRecord, SQLiteStore, UsageTotals

from .conftest import OTHER_KEY, auth, run_bridge

BODY = {"provider": "openai", "model": "gpt-realtime"}


@pytest.fixture
async def dev_bridge(env):
    async with run_bridge({**env, "SPEKO_DEV": "1", "OPENAI_API_KEY": "sk-test"}) as server:
        yield server


# -- finding 9: deep JSON ------------------------------------------------------------------


def deep(levels: int, close: bool = True) -> bytes:
    inner = b"[" * levels + (b"]" * levels if close else b"")
    return b'{"provider":"openai","model":"gpt-realtime","metadata":{"a":' + inner + b"}}"


@pytest.mark.parametrize("path", ["/v1/sessions", "/dev/sessions"])
async def test_deeply_nested_json_is_a_400_never_a_500(http, dev_bridge, path):
    port = dev_bridge.port
    headers = {**auth(), "Content-Type": "application/json",
               "Origin": f"http://127.0.0.1:{port}"}
    # within the 64 KiB body limit: the parser would recurse 30,000 levels (today: 500)
    for levels in (MAX_JSON_DEPTH + 1, 1_000, 30_000):
        async with http.post(dev_bridge.base + path, data=deep(levels), headers=headers) as r:
            body = await r.json()
            assert r.status == 400, (levels, body)
            assert body["error"]["code"] == "invalid_json"
            assert f"{MAX_JSON_DEPTH} levels" in body["error"]["message"]
    # 100,000 levels is past the body limit: 413, declared or streamed, still the usual body
    huge = deep(100_000, close=False)

    async def chunks():
        for i in range(0, len(huge), 8192):
            yield huge[i:i + 8192]

    for data in (huge, chunks()):
        async with http.post(dev_bridge.base + path, data=data, headers=headers) as r:
            assert r.status == 413
            assert (await r.json())["error"]["code"] == "payload_too_large"
    # a body as deep as allowed still mints
    ok = json.dumps({**BODY, "metadata": {"a": json.loads(b"[" * 60 + b"]" * 60)}})
    async with http.post(dev_bridge.base + path, data=ok, headers=headers) as r:
        assert r.status == 201, await r.text()


# -- finding 8: the dev mint and DNS rebinding ----------------------------------------------


async def dev_mint(http, bridge, headers: dict[str, str]) -> int:
    async with http.post(bridge.base + "/dev/sessions", json=BODY, headers=headers) as r:
        if r.status != 201:
            assert (await r.json())["error"]["code"] == "forbidden"
        return r.status


async def test_dev_mint_refuses_rebinding_and_originless_requests(http, dev_bridge):
    port = dev_bridge.port
    refused = [
        # DNS rebinding: evil.example resolves to 127.0.0.1, the browser says so in Host
        {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"},
        # a page on another origin posting to the real loopback address
        {"Host": f"127.0.0.1:{port}", "Origin": "http://evil.example"},
        {"Host": f"127.0.0.1:{port}", "Origin": f"http://127.0.0.1:{port}.evil.example"},
        {"Host": f"127.0.0.1:{port}", "Origin": f"https://127.0.0.1:{port}"},
        {"Host": f"localhost:{port}", "Origin": f"http://127.0.0.1:{port}"},
        {"Host": f"127.0.0.1:{port + 1}", "Origin": f"http://127.0.0.1:{port + 1}"},
        {"Host": "127.0.0.1", "Origin": "http://127.0.0.1"},
        {"Host": f"127.0.0.1:{port}", "Origin": "null"},
        # no Origin at all: not our page
        {"Host": f"127.0.0.1:{port}"},
        {"Host": f"evil.example:{port}"},
    ]
    for headers in refused:
        assert await dev_mint(http, dev_bridge, headers) == 403, headers
    for name in ("127.0.0.1", "localhost", "[::1]", "LOCALHOST"):
        host = f"{name}:{port}"
        assert await dev_mint(http, dev_bridge, {"Host": host, "Origin": f"http://{host}"}) == 201, host
    # the page's own request, as the browser sends it
    async with http.post(dev_bridge.base + "/dev/sessions", json=BODY,
                         headers={"Origin": dev_bridge.base}) as r:
        assert r.status == 201 and (await r.json())["token"]


# -- finding 10: storage and logs ----------------------------------------------------------


async def test_database_and_generated_keys_are_owner_only(env, http, tmp_path):
    dev_env = {k: v for k, v in env.items() if k not in ("SPEKO_API_KEYS", "SPEKO_SIGNING_KEY")}
    old_umask = os.umask(0o022)  # the usual umask, under which files come out 0644
    try:
        async with run_bridge({**dev_env, "SPEKO_DEV": "1"}) as bridge:
            async with http.post(bridge.base + "/dev/sessions", json=BODY,
                                 headers={"Origin": bridge.base}) as r:
                assert r.status == 201
            data = Path(env["SPEKO_DATA_DIR"])
            files = [data / "dev_api_key", data / "signing_key", Path(env["SPEKO_DB_PATH"])]
            files += [Path(env["SPEKO_DB_PATH"] + suffix) for suffix in ("-wal", "-shm")]
            for path in files:
                assert path.exists(), path
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))
            assert stat.S_IMODE(data.stat().st_mode) == 0o700
    finally:
        os.umask(old_umask)


def old_record(session_id: str, *, age: float, ttl: int = 600, now: float) -> SessionRecord:
    created = now - age
    return SessionRecord(
        session_id=session_id, owner="key_a", provider="openai", model="gpt-realtime",
        status="pending", params=SessionParams(provider="openai", model="gpt-realtime"),
        jti="jti_" + session_id, created_at=created, token_expires_at=created + 60, ttl_seconds=ttl,
    )


async def test_sqlite_retention_sweep_deletes_old_records_and_keeps_live_ones(env, tmp_path):
    retention = 3600
    settings = load_settings({**env, "SPEKO_RECORD_RETENTION_SECONDS": str(retention)})
    store = create_app(settings).state.store  # what the app sweeps with: the setting reaches it
    assert isinstance(store, SQLiteStore) and store.retention_seconds == retention
    now = time.time()
    day = 24 * 3600
    await store.open()
    try:
        records = {
            "old_ended": old_record("old_ended", age=3 * day, now=now),
            "old_never_used": old_record("old_never_used", age=3 * day, now=now),
            "old_revoked": old_record("old_revoked", age=3 * day, now=now),
            "recent_ended": old_record("recent_ended", age=retention / 2, now=now),
            # started 1 h 50 min ago with the longest ttl: may still be live
            "live_long": old_record("live_long", age=6600, ttl=1800, now=now),
            "fresh": old_record("fresh", age=1, now=now),
        }
        for record in records.values():
            await store.create(record)
        for name in ("old_ended", "recent_ended", "live_long"):
            await store.consume(name, "jti_" + name, records[name].created_at + 1)
        for name in ("old_ended", "recent_ended"):
            await store.finish(name, status="ended", close_code=1000, close_reason="", usage=UsageTotals(),
                               now=records[name].created_at + 120)
        await store.revoke("old_revoked", "key_a", records["old_revoked"].created_at + 5)
        await store.expire_stale(now)
        assert await store.delete_old(now) == 3
        for name in records:
            kept = await store.get(name) is not None
            assert kept == (not name.startswith("old_")), name
        assert await store.delete_old(now) == 0
        # later, each goes once retention (+ the 1 h grace) has passed since the latest
        # moment it could have ended: token expiry + ttl
        later = now + 7700
        assert await store.delete_old(later) == 2
        assert await store.get("recent_ended") is None and await store.get("live_long") is None
        assert await store.get("fresh") is not None  # could end at now + 659; kept until + 7859
    finally:
        await store.close()


async def test_default_mint_rate_answers_429_with_retry_after(env, http):
    assert "SPEKO_MINT_RATE_PER_MINUTE" not in env
    settings = load_settings(env)
    rate, burst = settings.mint_rate_per_minute, settings.mint_burst
    assert (rate, burst) == (DEFAULT_MINT_RATE_PER_MINUTE, DEFAULT_MINT_RATE_PER_MINUTE)
    async with run_bridge({**env, "OPENAI_API_KEY": "sk-test"}) as bridge:
        statuses: list[int] = []
        retry_after: list[str] = []
        gate = asyncio.Semaphore(32)

        async def one() -> None:
            async with gate, http.post(bridge.base + "/v1/sessions", json=BODY, headers=auth()) as r:
                statuses.append(r.status)
                if r.status == 429:
                    assert (await r.json())["error"]["code"] == "rate_limited"
                    retry_after.append(r.headers["Retry-After"])

        start = time.monotonic()
        await asyncio.gather(*(one() for _ in range(burst + 200)))
        elapsed = time.monotonic() - start
        assert set(statuses) <= {201, 429}
        assert statuses.count(429) > 0 and retry_after
        assert all(int(value) >= 1 for value in retry_after)
        assert statuses.count(201) <= burst + rate / 60 * elapsed + 1
        # the limit is per key: another key still mints
        async with http.post(bridge.base + "/v1/sessions", json=BODY, headers=auth(OTHER_KEY)) as r:
            assert r.status == 201


async def test_tokens_in_urls_never_reach_the_access_log(env, tmp_path):
    from .fleet import BridgeProcess

    proc = BridgeProcess("scrub", {**env, "SPEKO_SIMULATE": "1", "SPEKO_LOG_FORMAT": "json"}, tmp_path)
    await proc.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(proc.base + "/v1/sessions", json=BODY, headers=auth()) as r:
                token = (await r.json())["token"]
            secret = "sk_misplaced_secret_value"
            for path in (f"/healthz?token={token}", f"/healthz?x=1&api_key={secret}",
                         f"/{token}", f"/v1/sessions/{token}"):
                async with http.get(proc.base + path, headers=auth()) as r:
                    assert r.status in (200, 404)
            with contextlib.suppress(aiohttp.WSServerHandshakeError):
                async with http.ws_connect(f"{proc.ws_url}?token={token}") as ws:
                    await ws.receive(timeout=5)
    finally:
        proc.terminate()
        await proc.wait(15)
    log = proc.log_path.read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    access = [line["message"] for line in lines if line["logger"] == "uvicorn.access"]
    assert any("/healthz?token=[redacted]" in line for line in access), access
    assert any("api_key=[redacted]" in line for line in access), access
    assert any("/v1/realtime?token=[redacted]" in line for line in log.splitlines()), log[-3000:]
    for leaked in (token, token.split(".")[2], secret):
        assert leaked not in log
