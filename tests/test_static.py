"""What the bridge serves to browsers, over real HTTP: the SDK files with CORS (per
SPEKO_ALLOWED_ORIGINS, ``*`` when unset), their content types, cache and nosniff headers, in
production and dev mode alike; no redirect under /sdk (one would be built from the Host
header); the demo page (dev mode) with a CSP and no framing."""

from __future__ import annotations

import pytest

from .conftest import run_bridge

SDK = ["speko-realtime.js", "speko-capture-worklet.js", "speko-realtime.d.ts"]


@pytest.mark.parametrize("dev", ["0", "1"])
async def test_sdk_files_carry_cors_types_cache_and_nosniff(env, http, dev):
    async with run_bridge({**env, "SPEKO_DEV": dev}) as bridge:
        for name in SDK:
            async with http.get(f"{bridge.base}/sdk/{name}", headers={"Origin": "https://app.example.com"}) as r:
                assert r.status == 200, name
                assert r.headers["Access-Control-Allow-Origin"] == "*"
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                assert r.headers["Cache-Control"] == "public, max-age=300, must-revalidate"
                assert r.headers["ETag"]
                expected = "application/typescript" if name.endswith(".ts") else "text/javascript"
                assert r.headers["Content-Type"] == f"{expected}; charset=utf-8"
            async with http.get(f"{bridge.base}/sdk/{name}", headers={"If-None-Match": r.headers["ETag"]}) as again:
                assert again.status == 304  # a reload after max-age costs no body
        async with http.options(f"{bridge.base}/sdk/speko-realtime.js",
                                headers={"Origin": "https://app.example.com",
                                         "Access-Control-Request-Method": "GET"}) as r:
            assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "*"


async def test_cors_follows_allowed_origins(env, http):
    allowed = "https://app.example.com"
    async with run_bridge({**env, "SPEKO_ALLOWED_ORIGINS": f"{allowed},https://other.example.com"}) as bridge:
        url = f"{bridge.base}/sdk/speko-realtime.js"
        async with http.get(url, headers={"Origin": allowed}) as r:
            assert r.headers["Access-Control-Allow-Origin"] == allowed and "Origin" in r.headers["Vary"]
        async with http.get(url, headers={"Origin": "https://evil.example.com"}) as r:
            assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
            assert "Origin" in r.headers["Vary"]  # a shared cache must not hand this to app.example.com


@pytest.mark.parametrize("path", ["/sdk", "/sdk/", "/sdk/speko-realtime.js/", "/sdk/../api.py",
                                  "/sdk/nope.js", "/sdk/%2e%2e/devpage.py", "/demo", "/demo/"])
async def test_no_redirect_and_nothing_else_under_sdk(env, http, path):
    async with run_bridge({**env, "SPEKO_DEV": "1"}) as bridge:
        async with http.get(bridge.base + path, headers={"Host": "evil.example.com"},
                            allow_redirects=False) as r:
            assert r.status == 404, (path, r.status, dict(r.headers))
            assert "Location" not in r.headers and "evil" not in await r.text()
            if ".." not in path and "%2e" not in path:  # the client normalises those away from /sdk
                assert r.headers["X-Content-Type-Options"] == "nosniff"


async def test_demo_page_has_a_csp_and_cannot_be_framed(env, http):
    async with run_bridge({**env, "SPEKO_DEV": "1", "SPEKO_PUBLIC_URL": "https://voice.example.com"}) as bridge:
        async with http.get(bridge.base + "/") as r:
            assert r.status == 200 and r.headers["Content-Type"] == "text/html; charset=utf-8"
            csp = r.headers["Content-Security-Policy"]
            assert r.headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in csp
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert "wss://voice.example.com" in csp  # the minted socket URL may be another host
            assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["Cache-Control"] == "no-cache"
        for name, kind in [("demo.js", "text/javascript"), ("demo.css", "text/css")]:
            async with http.get(f"{bridge.base}/demo/{name}") as r:
                assert r.status == 200 and r.headers["Content-Type"] == f"{kind}; charset=utf-8"
        async with http.get(bridge.base + "/dev/providers") as r:
            assert (await r.json())["simulated"] == {"openai": True, "google": True, "xai": True}
