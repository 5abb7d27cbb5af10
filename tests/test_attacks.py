"""Token attacks against the running server. Every forged, stale or misplaced token gets
``error`` + ``close`` 4001 with the right code; none reaches the provider (the simulator
counts upgrade attempts); a refusal never burns the real token."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import string
import time

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from speko_bridge.tokens import SigningKeys

from .conftest import SIGNING_KEY, auth, run_bridge
from .wsclient import Received, assert_clean_close, closed, expect_refusal, mint, read

ISSUER, AUDIENCE = "speko-bridge", "speko-bridge/realtime"
KEYS = SigningKeys(SIGNING_KEY)


@pytest.fixture
async def sim(openai_sims):
    return await openai_sims(reply_ms=200)


@pytest.fixture
async def bridge(env, sim):
    async with run_bridge({**env, "SPEKO_OPENAI_URL": sim.url, "OPENAI_API_KEY": "sk-sim"}) as server:
        yield server


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_jwt(header: dict, claims: dict, sign) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def forge(created: dict, **changes) -> dict:
    """The real token's claims (same session, same jti) with ``changes``."""
    return {**claims_of(created["token"]), **changes}


async def opens(http, created: dict) -> bool:
    """The real token still opens its session (a refusal did not burn it)."""
    async with http.ws_connect(created["url"], protocols=[created["token"]]) as ws:
        await ws.send_str('{"type":"commit"}')
        got = await read(ws, Received(), lambda r: r.of("usage") or closed(r))
    return bool(got.of("usage"))


def attacks(created: dict) -> list[tuple[str, str, str]]:
    """(name, token, expected error code); each aims at the real, unused session."""
    now = int(time.time())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    kid = KEYS.current_kid
    real = created["token"]
    head, payload, signature = real.split(".")
    other_payload = b64url(json.dumps(forge(created, sub="sess_someone_else")).encode())
    flipped = signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")
    return [
        ("alg none", raw_jwt({"alg": "none", "typ": "JWT", "kid": kid}, forge(created), lambda _: b""),
         "invalid_token"),
        ("alg none, no signature segment",
         raw_jwt({"alg": "none", "kid": kid}, forge(created), lambda _: b"").rstrip("."), "invalid_token"),
        ("RS256 with the attacker's key",
         jwt.encode(forge(created), rsa_key, algorithm="RS256", headers={"kid": kid}), "invalid_token"),
        ("HS256 keyed with a public key (HS/RS confusion)",
         raw_jwt({"alg": "HS256", "kid": kid}, forge(created),
                 lambda m: hmac.new(public_pem, m, hashlib.sha256).digest()), "invalid_token"),
        ("HS512", raw_jwt({"alg": "HS512", "kid": kid}, forge(created),
                          lambda m: hmac.new(SIGNING_KEY.encode(), m, hashlib.sha512).digest()),
         "invalid_token"),
        ("unknown kid", jwt.encode(forge(created), SIGNING_KEY, algorithm="HS256", headers={"kid": "k0"}),
         "invalid_token"),
        ("missing kid", jwt.encode(forge(created), SIGNING_KEY, algorithm="HS256"), "invalid_token"),
        ("kid of the right key, signed by another",
         jwt.encode(forge(created), "another-key-0123456789-abcdefghijklmnop", algorithm="HS256",
                    headers={"kid": kid}), "invalid_token"),
        ("expired", KEYS.sign(forge(created, iat=now - 120, nbf=now - 120, exp=now - 60)), "token_expired"),
        ("nbf in the future", KEYS.sign(forge(created, nbf=now + 600, exp=now + 660)), "invalid_token"),
        ("wrong aud", KEYS.sign(forge(created, aud="someone-else")), "invalid_token"),
        ("wrong iss", KEYS.sign(forge(created, iss="evil")), "invalid_token"),
        ("no exp", KEYS.sign({k: v for k, v in forge(created).items() if k != "exp"}), "invalid_token"),
        ("exp as a string", KEYS.sign(forge(created, exp=str(now + 60))), "invalid_token"),
        ("tampered payload", f"{head}.{other_payload}.{signature}", "invalid_token"),
        ("tampered signature", f"{head}.{payload}.{flipped}", "invalid_token"),
        ("signature stripped", f"{head}.{payload}.", "invalid_token"),
        ("right signature, other jti", KEYS.sign(forge(created, jti="jti_guess")), "invalid_token"),
        ("oversized", real + "A" * 5000, "invalid_token"),
    ]


async def test_forged_and_stale_tokens_get_4001_and_never_reach_upstream(http, bridge, sim):
    created = await mint(http, bridge)
    for name, token, code in attacks(created):
        try:
            await expect_refusal(bridge.ws_url, [token], 4001, code)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None
    assert sim.handshakes == 0
    assert await opens(http, created), "a refused forgery burnt the real token"
    assert sim.handshakes == 1


async def test_used_revoked_and_misplaced_tokens(http, bridge, sim):
    used = await mint(http, bridge)
    assert await opens(http, used)
    await expect_refusal(bridge.ws_url, [used["token"]], 4001, "token_used")  # replay of an ended session

    revoked = await mint(http, bridge)
    async with http.delete(f"{bridge.base}/v1/sessions/{revoked['sessionId']}", headers=auth()) as r:
        assert r.status == 200
    await expect_refusal(bridge.ws_url, [revoked["token"]], 4001, "session_revoked")

    fresh = await mint(http, bridge)
    # the token anywhere but first: second subprotocol, query string, no subprotocol at all
    await expect_refusal(bridge.ws_url, ["realtime", fresh["token"]], 4001, "invalid_token")
    await expect_refusal(f"{bridge.ws_url}?token={fresh['token']}", [], 4001, "invalid_token")
    await expect_refusal(f"{bridge.ws_url}?access_token={fresh['token']}", ["realtime"], 4001,
                         "invalid_token")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {fresh['token']}"}) as s:
        async with s.ws_connect(bridge.ws_url) as ws:
            got = await read(ws, Received(), closed)
    assert_clean_close(got, 4001)
    assert sim.handshakes == 1
    assert await opens(http, fresh)  # none of that burnt it
    await expect_refusal(bridge.ws_url, [fresh["token"]], 4001, "token_used")
    assert sim.handshakes == 2


TCHAR = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
B64URL = string.ascii_letters + string.digits + "-_"


def random_subprotocols(n: int, seed: int = 1234) -> list[str]:
    """Strings a browser can offer as a subprotocol (RFC 7230 tokens): short and long noise,
    JWT-shaped noise, and JWT-shaped strings with our real header (alg and kid)."""
    rng = random.Random(seed)
    our_header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KEYS.current_kid}).encode())

    def noise(alphabet, lo, hi):
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))

    out: dict[str, None] = {}
    while len(out) < n:
        kind = len(out) % 4
        if kind == 0:
            s = noise(TCHAR, 1, 64)
        elif kind == 1:
            s = ".".join(noise(B64URL, 1, 200) for _ in range(3))
        elif kind == 2:
            s = f"{our_header}.{noise(B64URL, 20, 300)}.{noise(B64URL, 43, 43)}"
        else:
            s = noise(TCHAR, 300, 5000)
        out[s] = None
    return list(out)


async def test_ten_thousand_random_subprotocols_get_4001(bridge, sim):
    strings = random_subprotocols(10_000)
    assert len(set(strings)) == len(strings)
    refused = {}
    gate = asyncio.Semaphore(32)

    async def attempt(s: aiohttp.ClientSession, token: str) -> None:
        async with gate:
            async with s.ws_connect(bridge.ws_url, protocols=[token]) as ws:
                got = await read(ws, Received(), closed)
            refused[token] = (got.of("error")[0]["code"], got.close_code, ws.protocol == token)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as s:
        await asyncio.gather(*(attempt(s, t) for t in strings))
    outcomes = {}
    for code, close, echoed in refused.values():
        outcomes[(code, close, echoed)] = outcomes.get((code, close, echoed), 0) + 1
    assert outcomes == {("invalid_token", 4001, True): 10_000}
    assert sim.handshakes == 0
    metrics = bridge.app.state.metrics.registry
    assert metrics.get_sample_value("speko_sockets_refused_total", {"code": "4001"}) == 10_000
