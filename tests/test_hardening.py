"""Issue 24, the findings outside the live session, over real HTTP to a real server:
the dev mint against DNS rebinding (8), deeply nested JSON in REST bodies (9), and storage
and logs (10: retention, default mint rate, file modes, tokens kept out of access logs)."""

from __future__ import annotations

import asyncio
import json

import pytest

from speko_bridge.jsondepth import MAX_JSON_DEPTH

from .conftest import auth, run_bridge

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
