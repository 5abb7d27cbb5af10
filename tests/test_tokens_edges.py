"""Token and API-key edges that a client developer or an operator would run into: the exact
refusal each bad token gets (its code and the message the client reads), the boundaries of
the time window and of the size limit, ids that stay the same across releases, and a
verifier that trusts only the clock it is given. Found by ``make mutants`` (docs/testing.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

import jwt
import pytest

from speko_bridge.frames import ErrorCode
from speko_bridge.tokens import (
    MAX_TOKEN_BYTES,
    ApiKeyring,
    SigningKeys,
    TokenError,
    mint_token,
    verify_token,
)

KEY = "k" * 40
ISS, AUD = "speko-bridge", "speko-bridge/realtime"
CLAIMS = {"iss": ISS, "aud": AUD, "sub": "sess_1", "jti": "jti_1", "iat": 1000, "nbf": 1000, "exp": 1060}


def signed(claims: dict | None = None, *, headers: dict | None = None, key: str = KEY) -> str:
    """A token signed with ``key`` (HS256) carrying exactly these claims and header fields."""
    hdr = {"kid": SigningKeys(key).current_kid} if headers is None else headers
    return jwt.encode(CLAIMS if claims is None else claims, key, algorithm="HS256", headers=hdr)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hand_signed(header: dict, claims: dict, key: str = KEY) -> str:
    """A correctly signed HS256 token with any header, even ones PyJWT will not write."""
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


def refusal(token: str, *, now: float = 1010, keys: SigningKeys | None = None) -> tuple[ErrorCode, str]:
    with pytest.raises(TokenError) as err:
        verify_token(keys or SigningKeys(KEY), token, issuer=ISS, audience=AUD, now=now)
    assert str(err.value) == err.value.message  # what gets logged is what the client reads
    return err.value.code, err.value.message


# The client reads the message in its error frame: it is the only way to tell which check
# failed, so each refusal keeps its own wording.
@pytest.mark.parametrize("token,expected", [
    ("", (ErrorCode.INVALID_TOKEN, "token missing or too long")),
    ("x" * (MAX_TOKEN_BYTES + 1), (ErrorCode.INVALID_TOKEN, "token missing or too long")),
    ("not-a-jwt", (ErrorCode.INVALID_TOKEN, "token is not a JWT")),
    (signed(headers={"kid": "nobody"}), (ErrorCode.INVALID_TOKEN, "token signed by an unknown key")),
    (jwt.encode(CLAIMS, KEY, algorithm="HS384", headers={"kid": SigningKeys(KEY).current_kid}),
     (ErrorCode.INVALID_TOKEN, "token algorithm not accepted")),
    (signed({**CLAIMS, "exp": "1060"}), (ErrorCode.INVALID_TOKEN, "token time claims malformed")),
    (signed({**CLAIMS, "nbf": True}), (ErrorCode.INVALID_TOKEN, "token time claims malformed")),
    (signed({**CLAIMS, "sub": ""}), (ErrorCode.INVALID_TOKEN, "token subject malformed")),
    (signed({**CLAIMS, "jti": ""}), (ErrorCode.INVALID_TOKEN, "token subject malformed")),
    (signed({**CLAIMS, "nbf": 1020}), (ErrorCode.INVALID_TOKEN, "token not yet valid")),
    (signed({**CLAIMS, "exp": 1010}), (ErrorCode.TOKEN_EXPIRED, "token expired")),
], ids=["empty", "too_long", "not_jwt", "unknown_kid", "hs384", "exp_string", "nbf_bool",
        "sub_empty", "jti_empty", "not_yet", "expired"])
def test_each_refusal_has_its_code_and_message(token, expected):
    assert refusal(token) == expected


def test_a_bad_signature_says_rejected_and_why():
    code, message = refusal(signed(key="x" * 40, headers={"kid": SigningKeys(KEY).current_kid}))
    assert code is ErrorCode.INVALID_TOKEN
    assert message.startswith("token rejected: ") and "ignature" in message


@pytest.mark.parametrize("kid", [["a"], {"k": 1}, 7, None])
def test_a_kid_that_is_not_a_string_is_refused_not_a_crash(kid):
    token = hand_signed({"alg": "HS256", "typ": "JWT", "kid": kid}, CLAIMS)
    assert refusal(token)[0] is ErrorCode.INVALID_TOKEN
    assert SigningKeys(KEY).get(kid) is None


def test_a_token_is_valid_from_the_second_it_is_minted_until_just_before_exp():
    keys = SigningKeys(KEY)
    minted = mint_token(keys, session_id="sess_1", issuer=ISS, audience=AUD, now=1000, window=60)
    claims = jwt.decode(minted.token, options={"verify_signature": False})
    assert (claims["iat"], claims["nbf"], claims["exp"], minted.expires_at) == (1000, 1000, 1060, 1060)
    for now in (1000, 1059.999):
        claims = verify_token(keys, minted.token, issuer=ISS, audience=AUD, now=now)
        assert (claims.session_id, claims.jti, claims.expires_at) == ("sess_1", minted.jti, 1060)
    assert refusal(minted.token, now=1060) == (ErrorCode.TOKEN_EXPIRED, "token expired")
    assert refusal(minted.token, now=999.5) == (ErrorCode.INVALID_TOKEN, "token not yet valid")


def test_the_verifier_trusts_the_clock_it_is_given_not_the_machine_clock():
    """A replica whose clock we pass in (an hour ahead here) mints and verifies fine: nbf and
    iat are in this machine's future, and that must not matter."""
    ahead = int(time.time()) + 3600
    keys = SigningKeys(KEY)
    minted = mint_token(keys, session_id="sess_1", issuer=ISS, audience=AUD, now=ahead, window=60)
    assert verify_token(keys, minted.token, issuer=ISS, audience=AUD, now=ahead + 1).session_id == "sess_1"


def test_a_token_of_exactly_the_size_limit_is_read():
    header = {"alg": "HS256", "typ": "JWT", "kid": SigningKeys(KEY).current_kid}
    # base64 grows in steps of 4 characters per 3 bytes: pad the claims and the header
    # until the whole token lands exactly on the limit
    sizes = {len(hand_signed({**header, "x": "h" * m}, {**CLAIMS, "pad": "p" * n})): (m, n)
             for m in range(3) for n in range(2600, 3000)}
    m, n = sizes[MAX_TOKEN_BYTES]
    token = hand_signed({**header, "x": "h" * m}, {**CLAIMS, "pad": "p" * n})
    assert len(token) == MAX_TOKEN_BYTES
    assert verify_token(SigningKeys(KEY), token, issuer=ISS, audience=AUD, now=1010).session_id == "sess_1"


def test_a_fresh_signing_key_signs_and_verifies():
    """Every deployment has its own key: the first token signed with a key never seen in
    this process must verify (the prepared-key cache starts empty for it)."""
    key = secrets.token_urlsafe(32)
    keys = SigningKeys(key)
    minted = mint_token(keys, session_id="sess_9", issuer=ISS, audience=AUD, now=1000, window=60)
    assert verify_token(keys, minted.token, issuer=ISS, audience=AUD, now=1001).session_id == "sess_9"
    assert jwt.decode(minted.token, key, algorithms=["HS256"], audience=AUD,
                      options={"verify_exp": False, "verify_nbf": False, "verify_iat": False})["sub"] == "sess_9"


def test_jti_is_named_and_carries_128_random_bits():
    minted = mint_token(SigningKeys(KEY), session_id="s", issuer=ISS, audience=AUD, now=1000, window=60)
    prefix, _, rest = minted.jti.partition("_")
    assert prefix == "jti"
    assert len(base64.urlsafe_b64decode(rest + "==")) == 16
    claims = jwt.decode(minted.token, KEY, algorithms=["HS256"], audience=AUD,
                        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False})
    assert claims["jti"] == minted.jti


def test_ids_derived_from_keys_are_stable_across_releases():
    """A token's kid and an API key's id are stored and compared across replicas and
    upgrades (kid in tokens still in flight, key id as the owner of stored sessions): the
    same key must give the same id in every release."""
    assert SigningKeys(KEY).current_kid == "d73c3651ae59fcea"
    ring = ApiKeyring.from_config(["plain-key-0123456789"])
    assert ring.identify("plain-key-0123456789") == "key_b1aa26f4e98a"


def test_api_key_length_boundary_and_messages_name_the_entry():
    assert len(ApiKeyring.from_config(["a" * 16])) == 1
    with pytest.raises(ValueError) as err:
        ApiKeyring.from_config(["b" * 16, "a" * 15])
    assert str(err.value) == "entry 2 is shorter than 16 characters"
    with pytest.raises(ValueError) as err:
        ApiKeyring.from_config(["b" * 16, "sha256:" + "g" * 64])
    assert str(err.value) == "entry 2 is not sha256:<64 hex digits>"
    with pytest.raises(ValueError) as err:
        ApiKeyring.from_config([])
    assert str(err.value) == "no API key configured"
