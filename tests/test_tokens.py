"""Tokens and API keys: pure functions, so the clock is passed in."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from speko_bridge.frames import ErrorCode
from speko_bridge.tokens import (
    ApiKeyring,
    SigningKeys,
    TokenError,
    hash_api_key,
    mint_token,
    verify_token,
)

KEY = "k" * 40
ISS, AUD = "speko-bridge", "speko-bridge/realtime"


def mint(keys=None, now=1000, window=60):
    return mint_token(keys or SigningKeys(KEY), session_id="sess_1", issuer=ISS, audience=AUD,
                      now=now, window=window)


def verify(token, keys=None, now=1010):
    return verify_token(keys or SigningKeys(KEY), token, issuer=ISS, audience=AUD, now=now)


def test_claims_decode_as_documented():
    minted = mint()
    header = jwt.get_unverified_header(minted.token)
    assert header["alg"] == "HS256" and header["kid"] == SigningKeys(KEY).current_kid
    claims = jwt.decode(minted.token, KEY, algorithms=["HS256"], audience=AUD,
                        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False})
    assert set(claims) == {"iss", "aud", "sub", "jti", "iat", "nbf", "exp"}
    assert claims["sub"] == "sess_1" and claims["exp"] - claims["iat"] == 60
    assert KEY not in minted.token and "sk" not in json.dumps(claims)
    assert verify(minted.token).session_id == "sess_1"


@pytest.mark.parametrize("now,code", [(1060, ErrorCode.TOKEN_EXPIRED), (999, ErrorCode.INVALID_TOKEN)])
def test_time_window(now, code):
    with pytest.raises(TokenError) as err:
        verify(mint().token, now=now)
    assert err.value.code is code


def test_rotation_accepts_previous_keys_only():
    old = SigningKeys("o" * 40)
    token = mint(old).token
    rotated = SigningKeys(KEY, previous=["o" * 40])
    assert verify(token, rotated).session_id == "sess_1"
    with pytest.raises(TokenError):
        verify(token, SigningKeys(KEY))


def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("mutate", ["alg_none", "wrong_aud", "wrong_iss", "no_jti", "tampered", "rs256"])
def test_rejections(mutate):
    keys = SigningKeys(KEY)
    claims = {"iss": ISS, "aud": AUD, "sub": "sess_1", "jti": "j", "iat": 1000, "nbf": 1000, "exp": 1060}
    if mutate == "alg_none":
        token = _b64({"alg": "none", "kid": keys.current_kid}) + "." + _b64(claims) + "."
    elif mutate == "rs256":
        token = _b64({"alg": "RS256", "kid": keys.current_kid}) + "." + _b64(claims) + ".c2ln"
    elif mutate == "tampered":
        good = mint(keys).token.split(".")
        token = ".".join([good[0], _b64({**claims, "sub": "sess_other"}), good[2]])
    else:
        if mutate == "wrong_aud":
            claims["aud"] = "other"
        elif mutate == "wrong_iss":
            claims["iss"] = "other"
        else:
            del claims["jti"]
        token = jwt.encode(claims, KEY, algorithm="HS256", headers={"kid": keys.current_kid})
    with pytest.raises(TokenError) as err:
        verify(token, keys)
    assert err.value.code is ErrorCode.INVALID_TOKEN


@pytest.mark.parametrize("token", ["", "x", "a.b.c", "x" * 5000])
def test_garbage(token):
    with pytest.raises(TokenError):
        verify(token)


def test_api_keys_plain_and_hashed_share_ids():
    ring = ApiKeyring.from_config(["plain-key-0123456789", "sha256:" + hash_api_key("hashed-key-0123456789")])
    assert ring.identify("plain-key-0123456789").startswith("key_")
    assert ring.identify("hashed-key-0123456789") is not None
    assert ring.identify("plain-key-0123456789") != ring.identify("hashed-key-0123456789")
    assert ring.identify("nope") is None
    # the id is derived, stable, and is not the key
    again = ApiKeyring.from_config(["plain-key-0123456789"])
    assert again.identify("plain-key-0123456789") == ring.identify("plain-key-0123456789")


@pytest.mark.parametrize("entry", ["short", "sha256:xyz", "sha256:" + "a" * 63])
def test_bad_api_key_entries(entry):
    with pytest.raises(ValueError):
        ApiKeyring.from_config([entry])
